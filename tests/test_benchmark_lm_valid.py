"""benchmarks/lm_valid.py reads a .spacy corpus as one sentence per line and leaves no copy."""
from pathlib import Path

import pytest
import spacy
from conftest import load_script
from spacy.tokens import Doc, DocBin

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "lm_valid.py"


def _script():
    return load_script(SCRIPT, "lm_valid")


def test_plain_text_of_a_spacy_corpus_is_one_sentence_per_line_and_deleted(tmp_path):
    nlp = spacy.blank("en")
    first = Doc(nlp.vocab, words=["EU", "rejects", ".", "Peter", "Blackburn"], sent_starts=[True, False, False, True, False])
    second = Doc(nlp.vocab, words=["BRUSSELS", "1996-08-22", "é"])  # no sentence annotation: the doc is one line
    corpus = tmp_path / "dev.spacy"
    DocBin(docs=[first, second]).to_disk(corpus)
    with _script().plain_text(corpus) as text:
        lines = text.read_text(encoding="utf-8").splitlines()
        assert text.parent != tmp_path
    assert lines == ["EU rejects .", "Peter Blackburn", "BRUSSELS 1996-08-22 é"]
    assert not text.exists()


def test_plain_text_passes_a_text_file_through_and_refuses_an_empty_corpus(tmp_path):
    script = _script()
    txt = tmp_path / "valid.txt"
    txt.write_text("a b c\n", encoding="utf-8")
    with script.plain_text(txt) as text:
        assert text == txt
    assert txt.exists()
    empty = tmp_path / "empty.spacy"
    DocBin().to_disk(empty)
    with pytest.raises(SystemExit, match="holds no tokens"):
        with script.plain_text(empty):
            pass
