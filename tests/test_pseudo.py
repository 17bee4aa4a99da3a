"""Teacher-labelled raw text for fine-tuning the pruned tagger (spacy_ldnet.prune.pseudo)."""
import gzip
import json
import subprocess
import sys

import pytest
from spacy.tokens import Doc
from thinc.api import Adam, fix_random_seed

from spacy_ldnet.prune.pseudo import PseudoTextError, read_sentences, teacher_labelled_examples

from test_lm_embedder import make_lm_nlp, tiny_lm_path, write_trained_pipeline  # noqa: F401 (tiny_lm_path: a fixture)


def _write_text(path, lines):
    data = "\n".join(lines) + "\n"
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf8") as f:
            f.write(data)
    else:
        path.write_text(data, encoding="utf8")
    return path


LINES = [f"sentence {i} has {'x ' * (i % 5)}tokens ." for i in range(40)] + ["", "too short", "   "]


def test_read_sentences_samples_by_seed_within_the_length_limits(tmp_path):
    plain = _write_text(tmp_path / "text.txt", LINES)
    gz = _write_text(tmp_path / "text.txt.gz", LINES)
    a = read_sentences(plain, 10, seed=1, min_tokens=3, max_tokens=6)
    assert a == read_sentences(gz, 10, seed=1, min_tokens=3, max_tokens=6)  # gzip or plain: the same
    assert a != read_sentences(plain, 10, seed=2, min_tokens=3, max_tokens=6)
    assert len(a) == 10 and all(3 <= len(s) <= 6 for s in a)
    usable = [line.split() for line in LINES if 3 <= len(line.split()) <= 6]
    assert all(s in usable for s in a)
    order = [usable.index(s) for s in a]
    assert order == sorted(order)  # file order
    assert read_sentences(plain, len(usable), min_tokens=3, max_tokens=6) == usable


def test_read_sentences_errors_name_the_problem(tmp_path):
    with pytest.raises(PseudoTextError, match="not found"):
        read_sentences(tmp_path / "missing.txt.gz", 3)
    plain = _write_text(tmp_path / "text.txt", LINES)
    with pytest.raises(PseudoTextError, match="fewer than the 1000"):
        read_sentences(plain, 1000)
    bad = tmp_path / "corrupt.txt.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(PseudoTextError, match="Could not read"):
        read_sentences(bad, 3)
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("caf\xe9 au lait today .\n".encode("latin-1"))
    with pytest.raises(PseudoTextError, match="UTF-8"):
        read_sentences(latin, 1)


def test_teacher_labels_become_complete_gold_tags(tiny_lm_path):
    fix_random_seed(0)  # the torch weights are drawn when the pipe is added, before make_lm_nlp seeds
    nlp, examples = make_lm_nlp(tiny_lm_path)
    optimizer = Adam(0.01)
    for _ in range(30):  # enough for the tiny tagger to tag entities (seeds 0-2 all do by 20 updates)
        nlp.update(examples, sgd=optimizer, drop=0.0)
    sentences = [eg.reference.text.split() for eg in examples[:6]] + [["Nothing", "here", "."]]
    pseudo = teacher_labelled_examples(nlp, sentences)
    assert [[t.text for t in eg.predicted] for eg in pseudo] == sentences
    for eg, words in zip(pseudo, sentences):
        assert not eg.predicted.ents  # the input carries no annotation
        predicted = next(nlp.pipe([Doc(nlp.vocab, words=words)]))
        assert [(e.start, e.end, e.label_) for e in eg.reference.ents] == [
            (e.start, e.end, e.label_) for e in predicted.ents
        ]
    # Every token's tag is known, so no pseudo-labelled sentence drops out of the loss.
    pipe = nlp.get_pipe("ldnet_ner")
    scores = pipe.model.predict([eg.predicted for eg in pseudo])
    segments, keep, E, tags, mask = pipe.crf_batch(pseudo, scores)
    assert len(keep) == len(segments.spans) == len(pseudo)
    assert any(eg.reference.ents for eg in pseudo)  # the teacher did tag entities


def test_prune_cli_fine_tunes_on_teacher_labelled_text(tiny_lm_path, tmp_path):
    nlp, examples = write_trained_pipeline(tiny_lm_path, tmp_path)
    text = _write_text(tmp_path / "raw.txt.gz", [eg.reference.text for eg in examples])
    base = [sys.executable, "-m", "spacy_ldnet.cli", "prune", str(tmp_path / "trained"), str(tmp_path / "pruned"),
            "--train", str(tmp_path / "data.spacy"), "--dev", str(tmp_path / "data.spacy"),
            "--steps", "4", "--eval-every", "2", "--lambda0", "0.5", "--mask-learn-rate", "3", "--batch-size", "5"]
    no_text = subprocess.run(base + ["--finetune-steps", "2", "--pseudo-sentences", "3"], capture_output=True, text=True)
    assert no_text.returncode == 1 and "--pseudo-text" in no_text.stderr
    assert not (tmp_path / "pruned" / "state").exists()  # refused before any work
    proc = subprocess.run(
        base + ["--finetune-steps", "2", "--pseudo-text", str(text), "--pseudo-sentences", "3"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "Tagging 3 sentences" in proc.stdout
    settings = json.loads((tmp_path / "pruned" / "prune.json").read_text())["finetune"]["settings"]
    assert settings["pseudo_sentences"] == 3 and settings["pseudo_text"] == str(text)
    # Resuming the fine-tuning with other pseudo-labelled text is refused, not mixed.
    other = subprocess.run(
        base + ["--finetune-steps", "2", "--pseudo-text", str(text), "--pseudo-sentences", "2"],
        capture_output=True, text=True,
    )
    assert other.returncode == 1 and "pseudo_sentences: saved 3, now 2" in other.stderr
