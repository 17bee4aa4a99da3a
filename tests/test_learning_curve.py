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


def test_curve_runs_train_with_the_sized_settings():
    """The curve's overrides are init-config's: 2 steps per sentence within
    [1000, the config's own], and lm_dropout 0.3 only with LM features."""
    script = _script()
    ldnet, nolm = "configs/conll03_ldnet.cfg", "configs/conll03_ner.cfg"
    lm_key = "components.ldnet_ner.model.tok2vec.lm_dropout"
    assert script.settings_for(250, ldnet) == {"training.max_steps": 1000, "training.eval_frequency": 100, lm_key: 0.3}
    assert script.settings_for(1000, nolm) == {"training.max_steps": 2000, "training.eval_frequency": 200}
    assert script.settings_for(14041, ldnet) == {"training.max_steps": 8000, "training.eval_frequency": 800}
    assert script.settings_for(14041, nolm)["training.max_steps"] == 12000


def test_summary_averages_seeds_and_subtracts_the_no_lm_mean():
    script = _script()
    runs = [
        {"pipeline": "nolm", "size": "1000", "sentences": 1000, "seed": 0, "test": 80.0},
        {"pipeline": "nolm", "size": "1000", "sentences": 1000, "seed": 1, "test": 82.0},
        {"pipeline": "ldnet", "size": "1000", "sentences": 1000, "seed": 0, "test": 84.0},
        {"pipeline": "pruned", "size": "1000", "sentences": 1000, "seed": 0, "test": 82.5},
        {"pipeline": "ldnet_unk", "size": "1000", "sentences": 1000, "seed": 0, "test": 83.0},
        {"pipeline": "ldnet_unk", "size": "1000", "sentences": 1000, "seed": 1, "test": 83.5},
        {"pipeline": "nolm", "size": "all", "sentences": 14041, "seed": 0, "test": 90.0},
        {"pipeline": "nolm", "size": "250", "sentences": 250, "seed": 0, "test": 60.0},
    ]
    table = script.summarise(runs, ["test"])
    assert [row["size"] for row in table] == ["250", "1000", "all"]
    row = table[1]
    assert row["nolm"]["test"] == {"mean": 81.0, "sd": 1.41, "seeds": 2}
    assert row["ldnet"]["test"]["sd"] is None
    assert row["lm_gain"]["test"] == 3.0 and row["pruned_gain"]["test"] == 1.5 and row["ldnet_unk_gain"]["test"] == 2.25
    assert "lm_gain" not in table[2]
    text = script.markdown(table, ["test"], "NER")
    assert "| no LM | LD-Net | LM gain | LD-Net pruned | pruned gain | LD-Net, `<unk>` | gain |" in text  # no pruned_unk runs
    assert "| 1,000 | 2 | 81.00 (1.41) | 84.00, 1 seed | +3.00 | 82.50, 1 seed | +1.50 | 83.25 (0.35) | +2.25 |" in text
    assert "| 14,041 (all) | 1 | 90.00 |  |  |  |  |  |  |" in text


def test_sized_settings_follow_the_training_set():
    """Step budget and evaluation frequency for every config; lm_dropout only
    for a config with LM features, only up to SMALL_SET_SENTENCES, never raised."""
    from spacy.util import load_config

    from spacy_ldnet.budget import SMALL_SET_LM_DROPOUT, SMALL_SET_SENTENCES, sized_settings

    ldnet = load_config(ROOT / "configs" / "conll03_ldnet.cfg", interpolate=False)
    nolm = load_config(ROOT / "configs" / "conll03_ner.cfg", interpolate=False)
    key = "components.ldnet_ner.model.tok2vec.lm_dropout"
    small = sized_settings(SMALL_SET_SENTENCES, ldnet)
    assert small == {"training.max_steps": 2 * SMALL_SET_SENTENCES, "training.eval_frequency": SMALL_SET_SENTENCES // 5,
                     key: SMALL_SET_LM_DROPOUT}
    assert key not in sized_settings(SMALL_SET_SENTENCES + 1, ldnet)
    assert sized_settings(300, nolm) == {"training.max_steps": 1000, "training.eval_frequency": 100}
    ldnet["components"]["ldnet_ner"]["model"]["tok2vec"]["lm_dropout"] = SMALL_SET_LM_DROPOUT / 2
    assert key not in sized_settings(300, ldnet)
    with pytest.raises(ValueError, match="max_steps"):
        sized_settings(300, {"components": {}})
    with pytest.raises(ValueError, match="at least one"):
        sized_settings(0, nolm)


def _init_config(tmp_path, config, n_docs):
    """Run ``spacy-ldnet init-config`` on n_docs Docs of 2 sentences each."""
    import subprocess
    import sys

    nlp = spacy.blank("en")
    docs = [Doc(nlp.vocab, words=["Paris", "is", "big", ".", "Yes", "."], sent_starts=[True, False, False, False, True, False])
            for _ in range(n_docs)]
    DocBin(docs=docs).to_disk(tmp_path / "train.spacy")
    script = ROOT / ".venv" / "bin" / "spacy-ldnet"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "spacy_ldnet.cli"]
    out = tmp_path / "sized.cfg"
    proc = subprocess.run([*cmd, "init-config", str(config), str(out), "--train", str(tmp_path / "train.spacy")],
                          capture_output=True, text=True, timeout=120)
    return proc, out


def test_init_config_sizes_the_step_budget_to_the_training_set(tmp_path):
    """spacy-ldnet init-config: 2 steps per sentence within [1000, the config's
    budget], an evaluation every tenth; lm_dropout 0.3 with LM features up to
    1,000 sentences; the rest of the config unchanged."""
    from spacy.util import load_config

    from spacy_ldnet.budget import step_budget

    assert [step_budget(n, 8000) for n in (1, 500, 1000, 2500, 14041)] == [1000, 1000, 2000, 5000, 8000]
    base = load_config(ROOT / "configs" / "conll03_ldnet.cfg", interpolate=False)
    proc, out = _init_config(tmp_path, ROOT / "configs" / "conll03_ldnet.cfg", 700)
    assert proc.returncode == 0, proc.stderr
    assert "1,400 training sentences -> training.max_steps 2,800 (was 8,000)" in proc.stdout
    assert "lm_dropout" not in proc.stdout
    sized = load_config(out, interpolate=False)
    assert sized["training"]["max_steps"] == 2800 and sized["training"]["eval_frequency"] == 280
    sized["training"]["max_steps"], sized["training"]["eval_frequency"] = base["training"]["max_steps"], base["training"]["eval_frequency"]
    assert sized.to_str() == base.to_str()
    proc, out = _init_config(tmp_path, ROOT / "configs" / "conll03_ldnet.cfg", 400)
    assert proc.returncode == 0, proc.stderr
    assert "lm_dropout 0.3 (was 0.5)" in proc.stdout
    sized = load_config(out, interpolate=False)
    assert sized["components"]["ldnet_ner"]["model"]["tok2vec"]["lm_dropout"] == 0.3
    assert sized["training"]["max_steps"] == 1600
    bad, _ = _init_config(tmp_path, tmp_path / "nope.cfg", 10)
    assert bad.returncode == 1 and "not found" in bad.stderr and "Traceback" not in bad.stderr
