"""benchmarks/learning_curve.py: training subsets, step budgets, the summary."""
from pathlib import Path

import pytest
import spacy
from conftest import load_script
from spacy.tokens import Doc, DocBin, Span

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "learning_curve.py"


def _script():
    return load_script(SCRIPT, "learning_curve")


def test_subsets_are_the_first_sentences_with_their_entities_and_span_groups(tmp_path):
    script = _script()
    nlp = spacy.blank("en")
    doc = Doc(nlp.vocab, words=["EU", "rejects", "it", ".", "Peter", "Blackburn", "said", "."],
              sent_starts=[True, False, False, False, True, False, False, False],
              ents=["B-ORG", "O", "O", "O", "B-PER", "I-PER", "O", "O"])
    chunk = Doc(nlp.vocab, words=["He", "reckons", "."])  # no sentence boundaries: one sentence
    chunk.spans["chunks"] = [Span(chunk, 0, 1, "NP"), Span(chunk, 1, 2, "VP")]
    source = tmp_path / "train.spacy"
    DocBin(docs=[doc, chunk]).to_disk(source)

    assert script.make_subset(2, source, tmp_path / "two.spacy") == 2
    two = list(DocBin().from_disk(tmp_path / "two.spacy").get_docs(nlp.vocab))
    assert [[t.text for t in d] for d in two] == [["EU", "rejects", "it", "."], ["Peter", "Blackburn", "said", "."]]
    assert [(e.text, e.label_) for e in two[1].ents] == [("Peter Blackburn", "PER")]

    assert script.make_subset(None, source, tmp_path / "all.spacy") == 3
    every = list(DocBin().from_disk(tmp_path / "all.spacy").get_docs(nlp.vocab))
    assert [(s.text, s.label_) for s in every[2].spans["chunks"]] == [("He", "NP"), ("reckons", "VP")]

    with pytest.raises(ValueError, match="fewer than the 4"):
        script.make_subset(4, source, tmp_path / "four.spacy")


def test_step_budget_is_two_per_sentence_within_a_floor_and_the_configs_own():
    script = _script()
    config = "configs/conll03_ldnet.cfg"
    top = script.config_max_steps(config)
    assert script.steps_for(250, config) == 1000
    assert script.steps_for(1000, config) == 2000
    assert script.steps_for(10**6, config) == top
    assert script.steps_for(None, config) == top


def test_summary_averages_seeds_and_subtracts_the_no_lm_mean():
    script = _script()
    runs = [
        {"pipeline": "nolm", "size": "1000", "sentences": 1000, "seed": 0, "test": 80.0},
        {"pipeline": "nolm", "size": "1000", "sentences": 1000, "seed": 1, "test": 82.0},
        {"pipeline": "ldnet", "size": "1000", "sentences": 1000, "seed": 0, "test": 84.0},
        {"pipeline": "pruned", "size": "1000", "sentences": 1000, "seed": 0, "test": 82.5},
        {"pipeline": "nolm", "size": "all", "sentences": 14041, "seed": 0, "test": 90.0},
        {"pipeline": "nolm", "size": "250", "sentences": 250, "seed": 0, "test": 60.0},
    ]
    table = script.summarise(runs, ["test"])
    assert [row["size"] for row in table] == ["250", "1000", "all"]
    row = table[1]
    assert row["nolm"]["test"] == {"mean": 81.0, "sd": 1.41, "seeds": 2}
    assert row["ldnet"]["test"]["sd"] is None
    assert row["lm_gain"]["test"] == 3.0 and row["pruned_gain"]["test"] == 1.5
    assert "lm_gain" not in table[2]
    text = script.markdown(table, ["test"], "NER")
    assert "| 1,000 | 2 | 81.00 (1.41) | 84.00 | +3.00 | 82.50 | +1.50 |" in text
    assert "| 14,041 (all) | 1 | 90.00 |  |  |  |  |" in text


def test_init_config_sizes_the_step_budget_to_the_training_set(tmp_path):
    """spacy-ldnet init-config: 2 steps per sentence within [1000, the config's
    budget], an evaluation every tenth; the rest of the config unchanged."""
    import subprocess
    import sys

    from spacy.util import load_config

    from spacy_ldnet.budget import step_budget

    assert [step_budget(n, 8000) for n in (1, 500, 1000, 2500, 14041)] == [1000, 1000, 2000, 5000, 8000]
    nlp = spacy.blank("en")
    docs = []
    for i in range(700):  # 700 docs of 2 sentences each
        doc = Doc(nlp.vocab, words=["Paris", "is", "big", ".", "Yes", "."], sent_starts=[True, False, False, False, True, False])
        docs.append(doc)
    DocBin(docs=docs).to_disk(tmp_path / "train.spacy")
    script = ROOT / ".venv" / "bin" / "spacy-ldnet"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "spacy_ldnet.cli"]
    out = tmp_path / "sized.cfg"
    proc = subprocess.run([*cmd, "init-config", str(ROOT / "configs" / "conll03_ldnet.cfg"), str(out), "--train", str(tmp_path / "train.spacy")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "1,400 training sentences -> max_steps 2,800 (was 8,000)" in proc.stdout
    sized, base = load_config(out, interpolate=False), load_config(ROOT / "configs" / "conll03_ldnet.cfg", interpolate=False)
    assert sized["training"]["max_steps"] == 2800 and sized["training"]["eval_frequency"] == 280
    sized["training"]["max_steps"], sized["training"]["eval_frequency"] = base["training"]["max_steps"], base["training"]["eval_frequency"]
    assert sized.to_str() == base.to_str()
    bad = subprocess.run([*cmd, "init-config", str(tmp_path / "nope.cfg"), str(out), "--train", str(tmp_path / "train.spacy")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "not found" in bad.stderr and "Traceback" not in bad.stderr
