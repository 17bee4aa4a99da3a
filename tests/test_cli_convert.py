"""CoNLL conversion (IOB1, both -DOCSTART- variants) and the data checks."""
import subprocess
import sys
from pathlib import Path

import pytest
import spacy
from spacy.tokens import DocBin

from conftest import REPO
from spacy_ldnet.cli.convert import convert_conll

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


def _write(tmp_path: Path, text: str, name: str = "in.conll") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf8")
    return path


def test_docstart_variants_split_documents_like_spacy_convert(tmp_path):
    """Valid input gives what spaCy's own CoNLL converter gives (after the -DOCSTART- normalisation)."""
    from spacy.training.converters import conll_ner_to_docs

    text = CONLL.replace("-DOCSTART- -X- -X- O", "-DOCSTART- -X- O O")
    expected = list(conll_ner_to_docs(text, no_print=True))
    docs = _read(convert_conll(_write(tmp_path, CONLL), tmp_path / "out").path)
    assert len(docs) == len(expected) == 2
    for doc, ref in zip(docs, expected):
        assert [t.text for t in doc] == [t.text for t in ref]
        assert [t.is_sent_start for t in doc] == [t.is_sent_start for t in ref]
        assert [t.tag_ for t in doc] == [t.tag_ for t in ref]
        assert [(e.start, e.end, e.label_) for e in doc.ents] == [(e.start, e.end, e.label_) for e in ref.ents]


def test_convert_conll_iob1_and_docstart(tmp_path):
    src = tmp_path / "snippet.txt"
    src.write_text(CONLL, encoding="utf8")
    out = convert_conll(src, tmp_path / "out", name="tiny").path
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


def test_n_sents_is_not_used_for_a_file_with_docstart(tmp_path):
    result = convert_conll(_write(tmp_path, CONLL), tmp_path / "out", n_sents=1)
    assert result.doc_split == "docs split at the file's -DOCSTART- lines; --n-sents 1 not used"
    assert [(o.docs, o.sentences) for o in result.outputs] == [(2, 4)]


def test_convert_without_docstart_groups_sentences(tmp_path):
    sentences = [b.strip("\n") for b in CONLL.split("\n\n") if b.strip() and not b.startswith("-DOCSTART-")]
    assert len(sentences) == 4
    src = tmp_path / "nodoc.txt"
    src.write_text("\n\n".join(sentences) + "\n", encoding="utf8")
    docs = _read(convert_conll(src, tmp_path / "out", n_sents=2).path)
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
    assert "train.spacy: 2 docs, 4 sentences, 25 tokens, 8 entities" in result.output
    assert "scheme IOB1 (detected); docs split at the file's -DOCSTART- lines" in result.output
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


def test_convert_conll2000_to_spans(tmp_path):
    src = tmp_path / "train.txt"
    src.write_text(CONLL00, encoding="utf8")
    out = convert_conll(src, tmp_path / "out", name="test", spans_key="chunks").path
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
    out = convert_conll(src, tmp_path / "out", name="train", spans_key="chunks", holdout_every=2).path
    assert out == tmp_path / "out" / "train.spacy"
    train, dev = _read(out), _read(tmp_path / "out" / "dev.spacy")
    # 1-based sentence numbers 2 and 4 are held out, 1, 3 and 5 kept
    assert _chunks(train) == [CONLL00_CHUNKS[0], CONLL00_CHUNKS[2], CONLL00_CHUNKS[4]]
    assert _chunks(dev) == [CONLL00_CHUNKS[1], CONLL00_CHUNKS[3]]
    # deterministic: a second run gives the same files
    out2 = convert_conll(src, tmp_path / "again", name="train", spans_key="chunks", holdout_every=2).path
    assert out2.read_bytes() == out.read_bytes()
    assert (tmp_path / "again" / "dev.spacy").read_bytes() == (tmp_path / "out" / "dev.spacy").read_bytes()
    held = convert_conll(src, tmp_path / "three", spans_key="chunks", holdout_every=3, holdout_name="heldout").path
    assert held.name == "train.spacy"
    assert _chunks(_read(tmp_path / "three" / "heldout.spacy")) == [CONLL00_CHUNKS[2]]


def test_convert_entities_with_holdout(tmp_path):
    sentences = [b for b in CONLL.split("\n\n") if b.strip() and not b.startswith("-DOCSTART-")]
    src = tmp_path / "nodoc.txt"
    src.write_text("\n\n".join(s.strip("\n") for s in sentences) + "\n", encoding="utf8")
    out = convert_conll(src, tmp_path / "out", n_sents=1, holdout_every=2).path
    kept, held = _read(out), _read(tmp_path / "out" / "dev.spacy")
    ents = [[(e.text, e.label_) for e in d.ents] for d in kept + held]
    assert ents == [EXPECTED[0][:2], EXPECTED[1][:3], EXPECTED[0][2:], EXPECTED[1][3:]]


def test_convert_spans_corpus_reads_with_gold_preproc(tmp_path):
    """spacy train reads the span docs with gold_preproc: the chunks must reach the examples."""
    from spacy.training import Corpus

    src = tmp_path / "train.txt"
    src.write_text(CONLL00, encoding="utf8")
    out = convert_conll(src, tmp_path / "out", spans_key="chunks").path
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
    assert "train.spacy: 3 docs, 3 sentences, 11 tokens, 7 spans in doc.spans['chunks']" in result.output
    assert "dev.spacy: 2 docs, 2 sentences, 14 tokens, 10 spans in doc.spans['chunks']" in result.output
    assert "--holdout-every" in CliRunner().invoke(app, ["convert-conll", "--help"]).output
    result = CliRunner().invoke(app, args[:3] + ["--spans-key", "chunks", "--n-sents", "5"])
    assert result.exit_code != 0 and "n-sents" in result.output


# ------------------------------------------------------------ validation
def _run(args, cwd):
    """The console script (errors: to check that no traceback reaches the user)."""
    return subprocess.run(_console_script() + ["convert-conll"] + args, capture_output=True, text=True, cwd=cwd)


def _invoke(args):
    """The command in this process (successful runs: no second spaCy import)."""
    from typer.testing import CliRunner

    from spacy_ldnet.cli import app

    result = CliRunner().invoke(app, ["convert-conll"] + [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


SENTENCE = "EU NNP B-NP I-ORG\nrejects VBZ B-VP O\nGermany NNP B-NP I-LOC\n"
# (file bytes, extra args, expected on stderr): every case exits non-zero with one message and writes nothing
CLI_ERRORS = [
    (b"x NN O FOO\ny NN O B-LOC\n", [], "in.conll:1: 'FOO' (column 4): unknown tag"),
    (b"x NN O FOO\ny NN O B-LOC\n", ["--spans-key", "chunks"], "in.conll:1: 'FOO' (column 4): unknown tag"),
    (b"EU NNP B-NP B-ORG\nrejects VBZ O\n", [], "in.conll:2: 3 columns in 'rejects VBZ O', but the file's rows have 4"),
    (b"New B-LOC\nYork I-LOC\n\nRome S-LOC\n", [], "in.conll:2: ill-formed IOBES tags (detected): the LOC chunk"),
    (SENTENCE.encode(), ["--n-sents", "-3"], "--n-sents must be at least 1, got -3"),
    (SENTENCE.encode(), ["--n-sents", "0"], "--n-sents must be at least 1, got 0"),
    (SENTENCE.encode(), ["--holdout-every", "1"], "--holdout-every must be at least 2"),
    (SENTENCE.encode(), ["--scheme", "BIO"], "--scheme 'BIO': unknown tag scheme"),
    (SENTENCE.encode(), ["--tag-column", "1"], "--tag-column 1: column 1 is the token"),
    (SENTENCE.encode(), ["--tag-column", "9"], "--tag-column 9, but in.conll has 4 columns"),
    (b"Rome S-LOC\n", ["--scheme", "IOB2"], "in.conll:1: 'S-LOC' (column 2): not a IOB2 tag (--scheme IOB2)"),
    (SENTENCE.encode("utf-16"), [], "in.conll is UTF-16 text; CoNLL files are read as UTF-8. Fix: iconv -f UTF-16"),
    (b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00", [], "in.conll:1: a NUL byte; this is a binary file"),
    (b"", [], "in.conll has no token rows"),
    (b"EU\nrejects\n", [], "in.conll:1: one column ('EU')"),
]


@pytest.mark.parametrize("data, args, message", CLI_ERRORS, ids=[c[2][:40] for c in CLI_ERRORS])
def test_convert_cli_errors_without_traceback_or_output(tmp_path, data, args, message):
    (tmp_path / "in.conll").write_bytes(data)
    proc = _run(["in.conll", "out"] + args, tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.startswith("Error: ") and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    assert not (tmp_path / "out").exists(), "nothing is written when validation fails"


def test_convert_cli_output_path_is_a_file(tmp_path):
    _write(tmp_path, SENTENCE)
    (tmp_path / "out").write_text("keep")
    for out in ("out", "out/sub"):
        proc = _run(["in.conll", out], tmp_path)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        assert "Output path out exists and is a file, not a folder" in proc.stderr
    assert (tmp_path / "out").read_text() == "keep"


def test_failed_conversion_leaves_existing_output_untouched(tmp_path):
    good = _write(tmp_path, CONLL00, "train.txt")
    convert_conll(good, tmp_path / "out", spans_key="chunks", holdout_every=2)
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    assert sorted(before) == ["dev.spacy", "train.spacy"]
    # the error is in the last sentence, after everything the hold-out split would write
    bad = _write(tmp_path, CONLL00 + "\nNo UH B-INTJ\nway NN X-NP\n", "bad.txt")
    with pytest.raises(ValueError, match=r"bad.txt:\d+: 'X-NP'"):
        convert_conll(bad, tmp_path / "out", name="train", spans_key="chunks", holdout_every=2)
    (tmp_path / "out" / "dev.spacy").unlink()
    (tmp_path / "out" / "dev.spacy").mkdir()  # the hold-out output is a folder: train.spacy is not written either
    with pytest.raises(ValueError, match="dev.spacy exists and is a folder"):
        convert_conll(good, tmp_path / "out", spans_key="chunks", holdout_every=2)
    assert (tmp_path / "out" / "train.spacy").read_bytes() == before["train.spacy"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["dev.spacy", "train.spacy"], "no temp files"


def test_whitespace_only_separators_and_default_doc_size(tmp_path):
    # 25 two-column sentences, tab separated, with a TAB on each separator line
    rows = ["Rome\tI-LOC\nfell\tO", "Ann\tI-PER", "x\tO"] * 8 + ["end\tO"]
    src = _write(tmp_path, "\n\t\n".join(rows) + "\n")
    output = _invoke([src, tmp_path / "out"])
    assert "docs of 10 sentences (--n-sents; the file has no -DOCSTART- lines)" in output
    assert "in.spacy: 3 docs, 25 sentences, 33 tokens, 16 entities" in output
    docs = _read(tmp_path / "out" / "in.spacy")
    assert [len(list(d.sents)) for d in docs] == [10, 10, 5]
    assert [len(s) for s in docs[0].sents][:3] == [2, 1, 1]
    assert [(e.text, e.label_) for e in docs[0].ents][:2] == [("Rome", "LOC"), ("Ann", "PER")]
    import typer

    from spacy_ldnet.cli import app

    params = {p.name: p for p in typer.main.get_command(app).commands["convert-conll"].params}
    assert "without -DOCSTART- lines (default 10;" in params["n_sents"].help


ANNOTATION = {  # "New York is in the US , Ann and Bob said ." with LOC, LOC, PER, PER (adjacent ORG-free)
    "IOB1": "I-LOC I-LOC O O O I-LOC O I-PER O I-PER O O",
    "IOB2": "B-LOC I-LOC O O O B-LOC O B-PER O B-PER O O",
    "BIOES": "B-LOC E-LOC O O O S-LOC O S-PER O S-PER O O",
    "BILUO": "B-LOC L-LOC O O O U-LOC O U-PER O U-PER O O",
}
ANNOTATION_WORDS = "New York is in the US , Ann and Bob said .".split()


@pytest.mark.parametrize("spans_key", [None, "chunks"])
def test_every_scheme_converts_to_the_same_entities(tmp_path, spans_key):
    found = {}
    for scheme, tags in ANNOTATION.items():
        src = _write(tmp_path, "".join(f"{w} {t}\n" for w, t in zip(ANNOTATION_WORDS, tags.split())), f"{scheme}.txt")
        result = convert_conll(src, tmp_path / "out", spans_key=spans_key)
        assert result.conll.scheme == {"BIOES": "IOBES"}.get(scheme, scheme)
        (doc,) = _read(result.path)
        spans = doc.ents if spans_key is None else doc.spans[spans_key]
        found[scheme] = [(s.text, s.label_) for s in spans]
    assert found["BIOES"] == [("New York", "LOC"), ("US", "LOC"), ("Ann", "PER"), ("Bob", "PER")]
    assert found["IOB1"] == found["IOB2"] == found["BIOES"] == found["BILUO"]


def test_tag_column_and_repairs_on_the_command_line(tmp_path):
    text = SENTENCE + "wants VBZ I-VP O\n"  # IOB2 chunks with a stray I-VP after B-NP
    src = _write(tmp_path, text)
    output = _invoke([src, tmp_path / "out", "--tag-column", "3", "--spans-key", "chunks"])
    assert "tags in column 3, scheme IOB2 (detected)" in output
    assert "Repaired 1 ill-formed IOB2 tags (an I-X that continues no X chunk starts a chunk" in output
    assert "in.conll:4: 'I-VP' after 'B-NP' read as a chunk start" in output
    (doc,) = _read(tmp_path / "out" / "in.spacy")
    assert [(s.text, s.label_) for s in doc.spans["chunks"]] == [
        ("EU", "NP"), ("rejects", "VP"), ("Germany", "NP"), ("wants", "VP")
    ]
    assert [t.tag_ for t in doc] == ["NNP", "VBZ", "NNP", "VBZ"] and not doc.ents
    ents = convert_conll(src, tmp_path / "ents")
    assert ents.conll.scheme == "IOB1" and ents.outputs[0].chunks == 2


def test_bad_lang_and_stems(tmp_path):
    src = _write(tmp_path, SENTENCE)
    with pytest.raises(ValueError, match="--lang 'zz' is not a spaCy language code"):
        convert_conll(src, tmp_path / "out", lang="zz")
    with pytest.raises(ValueError, match="--name '../x' must be a file stem"):
        convert_conll(src, tmp_path / "out", name="../x")
    with pytest.raises(ValueError, match="--holdout-name '' must be a file stem"):
        convert_conll(src, tmp_path / "out", holdout_every=2, holdout_name="")
    assert not (tmp_path / "out").exists()
