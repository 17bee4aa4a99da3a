"""Every ``spacy-ldnet`` command answers bad input with a message, not a traceback.

One row per bad input: the command line and the text the message must contain
(the offending path or value), with ``{missing}`` (a path that does not
exist), ``{file}`` (a plain text file), ``{bad_tag}`` (a CoNLL file with the
tag FOO), ``{good}`` (a valid CoNLL file) and ``{tmp}`` filled in at run time.
The table must cover every command the console script registers, so a new
command cannot ship without such a check. Detailed cases for each command
live beside its other tests (test_cli_convert.py, test_conll.py,
test_lm_*.py, test_prune_cli.py, test_calibrate.py).
"""
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(sys.executable).parent / "spacy-ldnet"

BAD_INPUTS = [
    ("convert-conll {missing} {tmp}/out", "{missing}"),
    ("convert-conll {bad_tag} {tmp}/out", "FOO"),
    ("convert-conll {good} {file}", "{file}"),
    ("convert-conll {good} {tmp}/out --n-sents -3", "-3"),
    ("pretrain-lm --train {missing} --output {tmp}/lm --max-steps 10", "{missing}"),
    ("lm-info {missing}", "{missing}"),
    ("lm-info {file}", "{file}"),
    ("prune {missing} {tmp}/pruned --train {tmp}/t.spacy --dev {tmp}/d.spacy", "{missing}"),
    ("prune {file} {tmp}/pruned --train {tmp}/t.spacy --dev {tmp}/d.spacy", "{file}"),
    ("cut-lms {missing} {tmp}/cut --forward 0 --backward 0", "{missing}"),
    ("calibrate {missing} {tmp}/dev.spacy {tmp}/calibrated", "{missing}"),
    ("annotate {missing} {file} {tmp}/annotated", "{missing}"),
    ("trim-vectors {missing} {tmp}/trimmed", "{missing}"),
    ("trim-vectors {file} {tmp}/trimmed --rows 0", "{file}"),
    ("quantize {missing} {tmp}/int8", "{missing}"),
    ("quantize {file} {tmp}/int8", "{file}"),
    ("init-config {missing} {tmp}/sized.cfg --train {tmp}/t.spacy", "{missing}"),
    ("init-config {file} {tmp}/sized.cfg --train {missing}", "{missing}"),
]


def test_the_table_covers_every_command():
    from typer.main import get_command

    from spacy_ldnet.cli import app

    assert {line.split()[0] for line, _ in BAD_INPUTS} == set(get_command(app).commands)


@pytest.mark.parametrize("line,named", BAD_INPUTS)
def test_bad_input_gives_a_message_and_a_non_zero_exit(line, named, tmp_path):
    paths = {"tmp": tmp_path, "missing": tmp_path / "missing", "file": tmp_path / "a_file.txt",
             "bad_tag": tmp_path / "bad_tag.conll", "good": tmp_path / "good.conll"}
    paths["file"].write_text("not a folder\n", encoding="utf8")
    paths["bad_tag"].write_text("x NN O FOO\ny NN O B-LOC\n", encoding="utf8")
    paths["good"].write_text("EU NNP B-NP B-ORG\nrejects VBZ B-VP O\n", encoding="utf8")
    argv = line.format(**paths).split()
    proc = subprocess.run([str(SCRIPT), *argv], capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert "Traceback" not in output, output
    assert named.format(**paths) in " ".join(output.split()), output  # a long path may be wrapped
