"""Bad arguments of `spacy-ldnet pretrain-lm` and `spacy-ldnet lm-info`: one line on stderr
naming the value and the fix, a non-zero exit status, no traceback."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from spacy_ldnet.cli import app

SHIPPED = Path(__file__).resolve().parent.parent / "spacy_ldnet" / "lm" / "default" / "forward"


def _files(tmp: Path) -> dict:
    """The inputs the cases refer to, written once per test."""
    f = {"corpus": tmp / "c.txt", "empty": tmp / "empty.txt", "file": tmp / "a_file", "dir": tmp / "a_dir",
         "bad_vocab": tmp / "vocab.txt", "out": tmp / "out"}
    f["corpus"].write_text("the cat sat .\na dog ran .\n" * 20, encoding="utf-8")
    f["empty"].write_text("\n\n  \n", encoding="utf-8")
    f["file"].write_text("x", encoding="utf-8")
    f["dir"].mkdir()
    f["bad_vocab"].write_text("a\nb\n", encoding="utf-8")
    return f


def _pretrain(f, changes=None):
    """pretrain-lm arguments of a tiny valid run, with ``changes`` ({option: value, or None to drop it})."""
    opts = {"--train": f["corpus"], "--output": f["out"], "--max-steps": 1, "--input-embeddings": "random",
            "--embed-dim": 8, "--output-layer": "softmax", "--layers": 1, "--hidden": 8}
    opts.update(changes or {})
    return ["pretrain-lm", "--no-progress"] + [str(x) for k, v in opts.items() if v is not None for x in (k, v)]


def _old_checkpoint(f):
    ckpt = f["out"] / "checkpoints" / "step-00000005"
    ckpt.mkdir(parents=True)
    for name in ("model.safetensors", "config.json", "vocab.txt", "trainer_state.pt"):
        (ckpt / name).write_text("x")
    (ckpt.parent / "latest").write_text("step-00000005\n")
    return ckpt / "trainer_state.pt"


def _run_dir(f):
    (f["dir"] / "model").mkdir()
    (f["dir"] / "model" / "config.json").write_text("{}")
    return f["dir"]


def _damaged_lm(f, what):
    lm = f["dir"] / "lm"
    lm.mkdir()
    for name in ("config.json", "model.safetensors", "vocab.txt"):
        (lm / name).write_bytes((SHIPPED / name).read_bytes())
    if what == "config":
        (lm / "config.json").write_text("{not json")
    elif what == "weights":
        data = (lm / "model.safetensors").read_bytes()
        (lm / "model.safetensors").write_bytes(data[: len(data) // 3])
    elif what == "vocab":
        (lm / "vocab.txt").write_text("<pad>\n<unk>\n")
    elif what == "format":
        cfg = json.loads((lm / "config.json").read_text())
        (lm / "config.json").write_text(json.dumps(dict(cfg, format="other")))
    return lm


# id: (arguments from the files, exit status, substrings of the message besides "Fix")
CASES = {
    "output_is_a_file": (lambda f: _pretrain(f, {"--output": f["file"]}), 1, ["--output", "a_file", "is a file"]),
    "output_under_a_file": (lambda f: _pretrain(f, {"--output": f["file"] / "run"}), 1, ["a_file", "is a file"]),
    "train_missing": (lambda f: _pretrain(f, {"--train": f["dir"] / "nope.txt"}), 1, ["--train", "nope.txt", "not found"]),
    "train_is_a_directory": (lambda f: _pretrain(f, {"--train": f["dir"]}), 1, ["--train", "a_dir", "is a directory"]),
    "train_has_no_tokens": (lambda f: _pretrain(f, {"--train": f["empty"]}), 1, ["empty.txt", "No tokens"]),
    "valid_missing": (lambda f: _pretrain(f, {"--valid": f["dir"] / "v.txt"}), 1, ["--valid", "v.txt", "not found"]),
    "vocab_missing": (lambda f: _pretrain(f, {"--vocab": f["dir"] / "v.txt"}), 1, ["--vocab", "v.txt", "not found"]),
    "vocab_without_special_tokens": (lambda f: _pretrain(f, {"--vocab": f["bad_vocab"]}), 1, ["vocab.txt", "special tokens"]),
    "glove_missing": (lambda f: _pretrain(f, {"--glove": f["dir"] / "g.txt"}), 1, ["--glove", "g.txt", "not found"]),
    "init_from_missing": (lambda f: _pretrain(f, {"--init-from": f["dir"] / "lm"}), 1, ["--init-from", "lm", "not a directory"]),
    "init_from_not_an_lm": (lambda f: _pretrain(f, {"--init-from": f["dir"]}), 1, ["--init-from", "config.json is missing"]),
    "direction_unknown": (lambda f: _pretrain(f, {"--direction": "sideways"}), 1, ["--direction", "sideways"]),
    "output_layer_unknown": (lambda f: _pretrain(f, {"--output-layer": "hinge"}), 1, ["--output-layer", "hinge"]),
    "glove_input_of_other_width": (lambda f: _pretrain(f, {"--input-embeddings": "glove"}), 1, ["--embed-dim", "50"]),
    "cutoffs_not_integers": (lambda f: _pretrain(f, {"--cutoffs": "4k,20k"}), 1, ["--cutoffs", "4k,20k"]),
    "max_time_unparseable": (lambda f: _pretrain(f, {"--max-time": "forty"}), 1, ["--max-time", "forty"]),
    "max_time_negative": (lambda f: _pretrain(f, {"--max-time": "-5"}), 1, ["--max-time", "-5"]),
    "no_stopping_rule": (lambda f: _pretrain(f, {"--max-steps": None}), 1, ["--max-steps", "--max-time"]),
    "batch_size_zero": (lambda f: _pretrain(f, {"--batch-size": "0"}), 1, ["--batch-size", ">= 1", "got 0"]),
    "vocab_size_too_small": (lambda f: _pretrain(f, {"--vocab-size": "3"}), 1, ["--vocab-size", "got 3"]),
    "dropout_out_of_range": (lambda f: _pretrain(f, {"--dropout": "1.5"}), 1, ["--dropout", "1.5"]),
    "learning_rate_zero": (lambda f: _pretrain(f, {"--lr": "0"}), 1, ["--lr", "got 0"]),
    "seed_negative": (lambda f: _pretrain(f, {"--seed": "-1"}), 1, ["--seed", "got -1"]),
    "device_unknown": (lambda f: _pretrain(f, {"--device": "tpu"}), 1, ["--device", "tpu"]),
    "pickled_checkpoint_in_output": (lambda f: (_old_checkpoint(f), _pretrain(f))[1], 1, ["trainer_state.pt", "--init-from"]),
    "layers_not_an_integer": (lambda f: _pretrain(f, {"--layers": "ten"}), 2, ["--layers"]),
    "train_not_given": (lambda f: _pretrain(f, {"--train": None}), 2, ["--train"]),
    "unknown_option": (lambda f: _pretrain(f, {"--epochs": "3"}), 2, ["--epochs"]),
    "lm_info_missing": (lambda f: ["lm-info", str(f["dir"] / "nope")], 1, ["nope", "not found"]),
    "lm_info_a_file": (lambda f: ["lm-info", str(SHIPPED / "config.json")], 1, ["config.json", "is a file", str(SHIPPED)]),
    "lm_info_not_a_checkpoint": (lambda f: ["lm-info", str(f["dir"])], 1, ["a_dir", "config.json is missing"]),
    "lm_info_run_directory": (lambda f: ["lm-info", str(_run_dir(f))], 1, [str(Path("a_dir") / "model")]),
    "lm_info_config_not_json": (lambda f: ["lm-info", str(_damaged_lm(f, "config"))], 1, ["config.json", "not valid JSON"]),
    "lm_info_other_format": (lambda f: ["lm-info", str(_damaged_lm(f, "format"))], 1, ["config.json", "'other'"]),
    "lm_info_weights_truncated": (lambda f: ["lm-info", str(_damaged_lm(f, "weights"))], 1, ["model.safetensors", "truncated"]),
    "lm_info_vocab_short": (lambda f: ["lm-info", str(_damaged_lm(f, "vocab"))], 1, ["vocab.txt", "2 tokens"]),
    "lm_info_no_path": (lambda f: ["lm-info"], 2, ["path"]),
}


def _check_message(stderr: str, code: int, expected_code: int, words) -> None:
    lines = stderr.strip().splitlines()
    assert code == expected_code, stderr
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Fix" in lines[0], stderr
    for w in words:
        assert w in lines[0], (w, lines[0])


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_argument_is_one_line_with_the_fix(tmp_path, case):
    make_args, expected_code, words = CASES[case]
    args = make_args(_files(tmp_path))
    result = CliRunner().invoke(app, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.stdout == ""
    _check_message(result.stderr, result.exit_code, expected_code, words)


def test_bad_arguments_through_the_console_entry_point(tmp_path):
    """The same messages from real processes: no traceback, nothing else on stderr."""
    f = _files(tmp_path)
    picked = ["output_is_a_file", "layers_not_an_integer", "lm_info_a_file"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = {case: subprocess.Popen([sys.executable, "-m", "spacy_ldnet.cli", *CASES[case][0](f)], env=env, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE) for case in picked}
    for case, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert "Traceback" not in err and out == "", (case, out, err)
        _check_message(err, proc.returncode, CASES[case][1], CASES[case][2])
