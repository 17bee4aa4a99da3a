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
