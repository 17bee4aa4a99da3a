"""CoNLL conversion (IOB1, both -DOCSTART- variants) and the data checks."""
import subprocess
import sys
from pathlib import Path

import pytest
import spacy
from spacy.tokens import DocBin

from conftest import REPO
from spacy_ldnet.cli.convert import DOCSTART, convert_conll, normalise_docstart

# IOB1 (CoNLL-2003 style): an entity starts with I-X after O or another type;
# B-X only starts an entity right after an entity of the same type X.
CONLL = """\
-DOCSTART- -X- O O

EU NNP I-NP I-ORG
rejects VBZ I-VP O
German JJ I-NP I-MISC
call NN I-NP O
. . O O

Peter NNP I-NP I-PER
Blackburn NNP I-NP I-PER
. . O O

-DOCSTART- -X- -X- O

Fans NNS I-NP O
from IN I-PP O
Italy NNP I-NP I-LOC
Germany NNP I-NP B-LOC
and CC O O
New NNP I-NP I-LOC
York NNP I-NP I-LOC
cheered VBD I-VP O
. . O O

The DT I-NP O
New NNP I-NP I-ORG
York NNP I-NP I-ORG
Times NNP I-NP I-ORG
Reuters NNP I-NP B-ORG
Bank NNP I-NP I-ORG
agreed VBD I-VP O
. . O O
"""

EXPECTED = [
    [("EU", "ORG"), ("German", "MISC"), ("Peter Blackburn", "PER")],
    [("Italy", "LOC"), ("Germany", "LOC"), ("New York", "LOC"), ("New York Times", "ORG"), ("Reuters Bank", "ORG")],
]


def _read(path: Path):
    return list(DocBin().from_disk(path).get_docs(spacy.blank("en").vocab))


def test_normalise_docstart():
    text = "-DOCSTART- -X- -X- O\n\nEU NNP I-NP I-ORG\n-DOCSTART- -X- O O\n-DOCSTARTED x y O\n"
    out = normalise_docstart(text)
    lines = out.split("\n")
    assert lines[0] == DOCSTART == "-DOCSTART- -X- O O"
    assert lines[3] == DOCSTART
    assert lines[1:3] == ["", "EU NNP I-NP I-ORG"] and lines[4] == "-DOCSTARTED x y O"
    assert len(lines) == len(text.split("\n"))
    assert normalise_docstart(out) == out


def test_convert_conll_iob1_and_docstart(tmp_path):
    src = tmp_path / "snippet.txt"
    src.write_text(CONLL, encoding="utf8")
    out = convert_conll(src, tmp_path / "out", name="tiny")
    assert out == tmp_path / "out" / "tiny.spacy"
    docs = _read(out)
    assert len(docs) == 2, "documents are split at both -DOCSTART- variants"
    for doc in docs:
        assert not any("DOCSTART" in t.text or t.text == "-X-" for t in doc)
    assert [[(e.text, e.label_) for e in doc.ents] for doc in docs] == EXPECTED
    assert [t.text for t in docs[1]][:4] == ["Fans", "from", "Italy", "Germany"]
    assert sum(len(d) for d in docs) == sum(
        1 for line in CONLL.splitlines() if line.strip() and not line.startswith("-DOCSTART-")
    )


def test_convert_without_docstart_groups_sentences(tmp_path):
    sentences = [b.strip("\n") for b in CONLL.split("\n\n") if b.strip() and not b.startswith("-DOCSTART-")]
    assert len(sentences) == 4
    src = tmp_path / "nodoc.txt"
    src.write_text("\n\n".join(sentences) + "\n", encoding="utf8")
    docs = _read(convert_conll(src, tmp_path / "out", n_sents=2))
    assert len(docs) == 2  # 4 sentences, 2 per doc
    assert [(e.text, e.label_) for d in docs for e in d.ents] == [x for doc in EXPECTED for x in doc]


def test_convert_missing_file_function(tmp_path):
    missing = tmp_path / "missing.txt"
    with pytest.raises(FileNotFoundError) as err:
        convert_conll(missing, tmp_path / "out")
    assert str(missing) in str(err.value)
    assert not (tmp_path / "out").exists()


def _console_script() -> list:
    script = Path(sys.executable).parent / "spacy-ldnet"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from spacy_ldnet.cli import main; main()"]


def test_convert_cli_missing_file(tmp_path):
    missing = tmp_path / "missing.txt"
    proc = subprocess.run(
        _console_script() + ["convert-conll", str(missing), str(tmp_path / "out")],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert proc.returncode != 0
    assert str(missing) in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr


def test_convert_cli_success(tmp_path):
    from typer.testing import CliRunner

    from spacy_ldnet.cli import app

    src = tmp_path / "snippet.txt"
    src.write_text(CONLL, encoding="utf8")
    result = CliRunner().invoke(app, ["convert-conll", str(src), str(tmp_path / "out"), "--name", "train"])
    assert result.exit_code == 0, result.output
    assert "2 docs" in result.output and "8 entities" in result.output
    assert (tmp_path / "out" / "train.spacy").exists()


def test_check_data_missing_and_present(tmp_path):
    script = REPO / "project" / "check_data.py"
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "nodata"), "train.txt", "dev.txt"],
        capture_output=True, text=True,
    )
    assert proc.returncode != 0
    assert str((tmp_path / "nodata" / "train.txt").resolve()) in proc.stderr
    assert "Fix" in proc.stderr
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.txt").write_text(CONLL)
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "data"), "train.txt", "dev.txt"],
        capture_output=True, text=True,
    )
    assert proc.returncode != 0
    assert "dev.txt" in proc.stderr and "train.txt" not in proc.stderr.split("Fix")[0]
    (tmp_path / "data" / "dev.txt").write_text(CONLL)
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "data"), "train.txt", "dev.txt"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr


# ---------------------------------------------------------------- CoNLL-2000
# IOB2 chunks, three columns (token POS chunk), no -DOCSTART- (synthetic).
CONLL00 = """\
He PRP B-NP
reckons VBZ B-VP
the DT B-NP
deficit NN I-NP
. . O

Rockwell NNP B-NP
said VBD B-VP
it PRP B-NP
signed VBD B-VP
. . O

Shares NNS B-NP
rose VBD B-VP
sharply RB B-ADVP
. . O

In IN B-PP
the DT B-NP
end NN I-NP
, , O
prices NNS B-NP
fell VBD B-VP
and CC O
fell VBD B-VP
again RB B-ADVP

Yes UH B-INTJ
. . O
"""
CONLL00_CHUNKS = [
    [("He", "NP"), ("reckons", "VP"), ("the deficit", "NP")],
    [("Rockwell", "NP"), ("said", "VP"), ("it", "NP"), ("signed", "VP")],
    [("Shares", "NP"), ("rose", "VP"), ("sharply", "ADVP")],
    [("In", "PP"), ("the end", "NP"), ("prices", "NP"), ("fell", "VP"), ("fell", "VP"), ("again", "ADVP")],
    [("Yes", "INTJ")],
]


def _chunks(docs, key="chunks"):
    return [[(s.text, s.label_) for s in d.spans[key]] for d in docs]


def test_iob_chunks_iob1_iob2_and_bad_tags():
    from spacy_ldnet.cli.convert import iob_chunks

    assert iob_chunks(["B-NP", "I-NP", "B-NP", "O", "B-VP", "I-VP"]) == [(0, 2, "NP"), (2, 3, "NP"), (4, 6, "VP")]
    # IOB1 / stray I-: I-X after O or another type starts a chunk
    assert iob_chunks(["I-NP", "I-NP", "I-VP", "O", "I-PP", "B-PP"]) == [
        (0, 2, "NP"), (2, 3, "VP"), (4, 5, "PP"), (5, 6, "PP"),
    ]
    assert iob_chunks(["O", "O"]) == [] and iob_chunks([]) == []
    assert iob_chunks(["B-WORK-OF-ART", "I-WORK-OF-ART"]) == [(0, 2, "WORK-OF-ART")]
    for bad in ("U-NP", "B-", "NP", "-"):
        with pytest.raises(ValueError, match="Not an IOB tag"):
            iob_chunks(["O", bad], where=" in x")


def test_convert_conll2000_to_spans(tmp_path):
    src = tmp_path / "train.txt"
    src.write_text(CONLL00, encoding="utf8")
    out = convert_conll(src, tmp_path / "out", name="test", spans_key="chunks")
    docs = _read(out)
    assert len(docs) == 5, "one sentence per doc"
    assert _chunks(docs) == CONLL00_CHUNKS
    assert all(len(d.ents) == 0 and not d.has_annotation("ENT_IOB") for d in docs)
    assert all(not d.has_annotation("SENT_START") for d in docs)
    assert [t.text for t in docs[3]] == "In the end , prices fell and fell again".split()
    assert sum(len(d) for d in docs) == sum(1 for line in CONLL00.splitlines() if line.strip())


def test_convert_conll2000_holdout_every(tmp_path):
    src = tmp_path / "train.txt"
    src.write_text(CONLL00, encoding="utf8")
    out = convert_conll(src, tmp_path / "out", name="train", spans_key="chunks", holdout_every=2)
    assert out == tmp_path / "out" / "train.spacy"
    train, dev = _read(out), _read(tmp_path / "out" / "dev.spacy")
    # 1-based sentence numbers 2 and 4 are held out, 1, 3 and 5 kept
    assert _chunks(train) == [CONLL00_CHUNKS[0], CONLL00_CHUNKS[2], CONLL00_CHUNKS[4]]
    assert _chunks(dev) == [CONLL00_CHUNKS[1], CONLL00_CHUNKS[3]]
    # deterministic: a second run gives the same files
    out2 = convert_conll(src, tmp_path / "again", name="train", spans_key="chunks", holdout_every=2)
    assert out2.read_bytes() == out.read_bytes()
    assert (tmp_path / "again" / "dev.spacy").read_bytes() == (tmp_path / "out" / "dev.spacy").read_bytes()
    held = convert_conll(src, tmp_path / "three", spans_key="chunks", holdout_every=3, holdout_name="heldout")
    assert held.name == "train.spacy"
    assert _chunks(_read(tmp_path / "three" / "heldout.spacy")) == [CONLL00_CHUNKS[2]]


def test_convert_entities_with_holdout(tmp_path):
    sentences = [b for b in CONLL.split("\n\n") if b.strip() and not b.startswith("-DOCSTART-")]
    src = tmp_path / "nodoc.txt"
    src.write_text("\n\n".join(s.strip("\n") for s in sentences) + "\n", encoding="utf8")
    out = convert_conll(src, tmp_path / "out", n_sents=1, holdout_every=2)
    kept, held = _read(out), _read(tmp_path / "out" / "dev.spacy")
    ents = [[(e.text, e.label_) for e in d.ents] for d in kept + held]
    assert ents == [EXPECTED[0][:2], EXPECTED[1][:3], EXPECTED[0][2:], EXPECTED[1][3:]]


def test_convert_spans_corpus_reads_with_gold_preproc(tmp_path):
    """spacy train reads the span docs with gold_preproc: the chunks must reach the examples."""
    from spacy.training import Corpus

    src = tmp_path / "train.txt"
    src.write_text(CONLL00, encoding="utf8")
    out = convert_conll(src, tmp_path / "out", spans_key="chunks")
    examples = list(Corpus(out, gold_preproc=True)(spacy.blank("en")))
    assert len(examples) == 5
    assert [[(s.text, s.label_) for s in eg.reference.spans["chunks"]] for eg in examples] == CONLL00_CHUNKS
    assert [t.text for t in examples[0].predicted] == [t.text for t in examples[0].reference]


def test_convert_spans_option_errors(tmp_path):
    src = tmp_path / "train.txt"
    src.write_text(CONLL00, encoding="utf8")
    with pytest.raises(ValueError, match="n-sents"):
        convert_conll(src, tmp_path / "out", spans_key="chunks", n_sents=10)
    with pytest.raises(ValueError, match="at least 2"):
        convert_conll(src, tmp_path / "out", spans_key="chunks", holdout_every=1)
    with pytest.raises(ValueError, match="too few"):
        convert_conll(src, tmp_path / "out", spans_key="chunks", holdout_every=9)
    with pytest.raises(ValueError, match="hold-out name"):
        convert_conll(src, tmp_path / "out", name="dev", spans_key="chunks", holdout_every=2)
    docstart = tmp_path / "docstart.txt"
    docstart.write_text(CONLL, encoding="utf8")
    with pytest.raises(ValueError, match="DOCSTART"):
        convert_conll(docstart, tmp_path / "out", holdout_every=2)
    bad = tmp_path / "bad.txt"
    bad.write_text("He PRP B-NP\nsaid VBD E-VP\n", encoding="utf8")
    with pytest.raises(ValueError, match="E-VP"):
        convert_conll(bad, tmp_path / "out", spans_key="chunks")


def test_convert_cli_spans_and_holdout(tmp_path):
    from typer.testing import CliRunner

    from spacy_ldnet.cli import app

    src = tmp_path / "train.txt"
    src.write_text(CONLL00, encoding="utf8")
    args = ["convert-conll", str(src), str(tmp_path / "out"), "--spans-key", "chunks", "--holdout-every", "2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "train.spacy: 3 docs, 11 tokens, 7 spans in doc.spans['chunks']" in result.output
    assert "dev.spacy: 2 docs, 14 tokens, 10 spans in doc.spans['chunks']" in result.output
    assert "--holdout-every" in CliRunner().invoke(app, ["convert-conll", "--help"]).output
    result = CliRunner().invoke(app, args[:3] + ["--spans-key", "chunks", "--n-sents", "5"])
    assert result.exit_code != 0 and "n-sents" in result.output
