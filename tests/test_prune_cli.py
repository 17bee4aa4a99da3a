"""``spacy-ldnet prune``: the README's example, the written files, resuming, and
one-line errors for bad arguments (run as the user runs it, in a subprocess)."""
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import spacy
import torch
from spacy.tokens import DocBin
from thinc.api import Adam

from spacy_ldnet.prune.costs import lm_cost
from spacy_ldnet.prune.locate import PruneError, lm_module
from spacy_ldnet.prune.workflow import read_corpus

from conftest import REPO, assert_well_formed, make_examples, make_nlp
from test_lm_embedder import LM_LAYERS, make_lm_nlp, tiny_lm_path  # noqa: F401 (tiny_lm_path: a fixture)
from test_prune import set_masks

CLI = [sys.executable, "-m", "spacy_ldnet.cli", "prune"]


def write_trained_pipeline(lm_path, root: Path, masks=None) -> Path:
    """A briefly trained tiny LD-Net pipeline at ``root/trained`` and its training
    data at ``root/data.spacy``; ``masks`` (forward, backward) replace the masks
    training leaves at 1."""
    nlp, examples = make_lm_nlp(lm_path)
    optimizer = Adam(0.01)
    for _ in range(5):
        nlp.update(examples, sgd=optimizer, drop=0.0)
    if masks is not None:
        set_masks(nlp, *masks)
    nlp.to_disk(root / "trained")
    DocBin(docs=[eg.reference for eg in make_examples(nlp)]).to_disk(root / "data.spacy")
    return root


@pytest.fixture(scope="module")
def trained(tiny_lm_path, tmp_path_factory) -> Path:
    """A folder with ``trained/`` (masks as training leaves them) and ``data.spacy``."""
    return write_trained_pipeline(tiny_lm_path, tmp_path_factory.mktemp("trained"))


def run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True)


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    message = proc.stderr.strip()
    assert message.startswith("Error: ") and "\n" not in message and "Fix:" in message, proc.stderr
    for needle in needles:
        assert needle in message, (needle, message)


def readme_prune_command() -> list:
    """The README's ``spacy-ldnet prune`` command (with its backslash-continued lines), as words."""
    found = re.findall(r"^spacy-ldnet prune (?:.*\\\n)*.*$", (REPO / "README.md").read_text(encoding="utf8"), flags=re.M)
    assert len(found) == 1, found
    return shlex.split(found[0].replace("\\\n", " "))


def test_readme_prune_example_runs_on_a_freshly_trained_pipeline(trained, tmp_path):
    """The README's command as a new user runs it (paths aside) on masks as
    training leaves them (all 1), with its layer budget, but 40 steps instead
    of the default 1,000 (a minute on this tiny pipeline) and at most 2
    fine-tuning steps: the masks do not come down to a budget below the 6
    layers of the tiny LMs, so the default keeps the largest ones."""
    words = readme_prune_command()
    positional = [w for i, w in enumerate(words[2:], 2) if not w.startswith("--") and not words[i - 1].startswith("--")]
    paths = {positional[0]: trained / "trained", positional[1]: tmp_path / "pruned"}
    args = [paths.get(w, trained / "data.spacy" if w.endswith(".spacy") else w) for w in words[2:]]
    budget = int(float(words[words.index("--lambda1") + 1])) if "--lambda1" in words else 2
    shorter = ["--steps", "40", "--eval-every", "20"] + (["--finetune-steps", "2"] if "--finetune-steps" in words else [])
    proc = run(*args, *shorter)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    report = json.loads((tmp_path / "pruned" / "prune.json").read_text())
    assert len(report["kept_layers"]["forward"]) + len(report["kept_layers"]["backward"]) <= budget
    progress = [line for line in proc.stdout.splitlines() if line.startswith("layer selection step")]
    assert all("loss" in line and "dev ents_f" in line and "layers in use" in line for line in progress[:2])
    if budget < 2 * LM_LAYERS:
        assert [(e["step"], e.get("forced_budget", False)) for e in report["evaluations"]] == [(20, False), (40, False), (40, True)]
        assert f"keeping the {budget} layers with the largest masks" in proc.stdout
        assert f"layers in use {budget:2d} (within budget {budget}, forced)" in progress[2]
    pruned = spacy.load(tmp_path / "pruned" / "model-pruned")
    assert_well_formed(pruned("Mary Jones works for Google in London ."), pruned.get_pipe("ldnet_ner").labels)


def test_prune_cli_end_to_end(tiny_lm_path, tmp_path):
    write_trained_pipeline(tiny_lm_path, tmp_path, masks=([1.0, 0.8, 0.8], [0.8, 0.8, 0.8]))
    out = tmp_path / "pruned"
    args = [
        tmp_path / "trained", out, "--train", tmp_path / "data.spacy", "--dev", tmp_path / "data.spacy",
        "--steps", "4", "--eval-every", "2", "--lambda0", "0.5", "--mask-learn-rate", "3", "--batch-size", "5",
        "--finetune-steps", "2",
    ]
    proc = run(*args)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    report = json.loads((out / "prune.json").read_text())
    kept = report["kept_layers"]
    assert len(kept["forward"]) + len(kept["backward"]) <= 2
    assert report["lm_multiply_adds_per_token"]["after"] < report["lm_multiply_adds_per_token"]["before"]
    for k in ("dev_f1", "test_f1", "words_per_second", "lm_parameters"):
        assert set(report[k]) >= {"before", "after"}
    assert (out / "layer_masks.png").stat().st_size > 1000
    assert report["machine"]["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert {2, 4} <= {e["step"] for e in report["evaluations"]}
    assert [e["step"] for e in report["finetune"]["evaluations"]] == [0, 2]
    assert report["dev_f1"]["after"] == pytest.approx(max(e["dev_f1"] for e in report["finetune"]["evaluations"]))
    pruned = spacy.load(out / "model-pruned")
    assert lm_cost(lm_module(pruned.get_pipe("ldnet_ner")))["layers"] == {
        "forward": len(kept["forward"]), "backward": len(kept["backward"]),
    }
    assert_well_formed(pruned("Mary Jones works for Google in London ."), pruned.get_pipe("ldnet_ner").labels)
    # Run again on the same OUTPUT_DIR: resumes from state/ instead of starting over.
    again = run(*args)
    assert again.returncode == 0, again.stderr + again.stdout
    assert "Resuming layer selection" in again.stdout and "measured before" in again.stdout
    assert "Resuming fine-tuning" in again.stdout
    assert json.loads((out / "prune.json").read_text())["kept_layers"] == kept
    # The same OUTPUT_DIR with another budget is refused in one line.
    assert_one_line_error(run(*args, "--lambda1", "3"), "lambda1: saved 2.0, now 3.0", str(out / "state"))


def test_strict_budget_stops_with_one_line_and_the_plot(trained, tmp_path):
    proc = run(
        trained / "trained", tmp_path / "out", "--train", trained / "data.spacy", "--dev", trained / "data.spacy",
        "--steps", "2", "--eval-every", "1", "--batch-size", "5", "--strict-budget",
    )
    assert_one_line_error(proc, "lambda1=2", "--steps", "--strict-budget")
    assert "Traceback" not in proc.stderr and (tmp_path / "out" / "layer_masks.png").is_file()
    assert not (tmp_path / "out" / "model-pruned").exists()


BAD_ARGUMENTS = [
    # (options replacing the good ones, words the one-line message must hold)
    ({"TRAINED": "{tmp}/nope"}, ["TRAINED_PIPELINE", "nope", "not found"]),
    ({"TRAINED": "{tmp}"}, ["no config.cfg", "model-best"]),
    ({"--train": "{tmp}/missing.spacy"}, ["--train", "missing.spacy", "not found"]),
    ({"--dev": "{tmp}/notes.txt"}, ["--dev", "notes.txt", "not a .spacy file", "convert-conll"]),
    ({"OUTPUT": "{tmp}/notes.txt"}, ["OUTPUT_DIR", "is a file"]),
    ({"OUTPUT": "{trained}/trained/out"}, ["OUTPUT_DIR", "inside TRAINED_PIPELINE"]),
    ({"--steps": "0"}, ["--steps 0", "at least 1"]),
    ({"--eval-every": "0"}, ["--eval-every 0", "at least 1"]),
    ({"--lambda1": "-1"}, ["--lambda1 -1.0", "at least 0"]),
    ({"--lambda0": "nan"}, ["--lambda0 nan"]),
    ({"--learn-rate": "0"}, ["--learn-rate 0.0", "above 0"]),
    ({"--mask-learn-rate": "-0.5"}, ["--mask-learn-rate -0.5", "above 0"]),
    ({"--batch-size": "0"}, ["--batch-size 0"]),
    ({"--finetune-steps": "-1"}, ["--finetune-steps -1"]),
    ({"--finetune-learn-rate": "inf"}, ["--finetune-learn-rate inf"]),
    ({"--threads": "0"}, ["--threads 0"]),
    ({"--gpu-id": "-2"}, ["--gpu-id -2"]),
]


@pytest.mark.parametrize("change,needles", BAD_ARGUMENTS, ids=[next(iter(c)) + "=" + v for c, _ in BAD_ARGUMENTS for v in c.values()])
def test_bad_arguments_are_named_in_one_line_before_anything_loads(trained, tmp_path, change, needles):
    (tmp_path / "notes.txt").write_text("John NNP I-NP I-PER\n")
    fill = {"tmp": tmp_path, "trained": trained}
    change = {k: v.format(**fill) for k, v in change.items()}
    options = {"--train": trained / "data.spacy", "--dev": trained / "data.spacy", **{k: v for k, v in change.items() if k.startswith("--")}}
    args = [change.get("TRAINED", trained / "trained"), change.get("OUTPUT", tmp_path / "out")]
    args += [w for option, value in options.items() for w in (option, value)]
    assert_one_line_error(run(*args), *needles)
    assert not (tmp_path / "out").exists()


def test_bad_pipelines_and_corpora_are_named_in_one_line(trained, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.cfg").write_text("[nlp]\nlang = \"xx-nonsense\"\n")
    no_lm = make_nlp()
    no_lm.get_pipe("ldnet_ner").initialize(lambda: make_examples(no_lm), nlp=no_lm)
    no_lm.to_disk(tmp_path / "no_lm")
    (tmp_path / "garbage.spacy").write_bytes(b"\x00 not a DocBin")
    good = ["--train", trained / "data.spacy", "--dev", trained / "data.spacy"]
    assert_one_line_error(run(broken, tmp_path / "o1", *good), "TRAINED_PIPELINE", str(broken), "could not be loaded")
    assert_one_line_error(run(tmp_path / "no_lm", tmp_path / "o2", *good), "LMEmbedder", "configs/conll03_ldnet.cfg")
    garbage = ["--train", tmp_path / "garbage.spacy", "--dev", trained / "data.spacy"]
    assert_one_line_error(run(trained / "trained", tmp_path / "o3", *garbage), "--train", "garbage.spacy", "could not be read")


def test_a_type_error_in_an_option_is_answered_by_typer_without_a_traceback(trained, tmp_path):
    proc = run(trained / "trained", tmp_path / "out", "--train", trained / "data.spacy", "--dev", trained / "data.spacy", "--steps", "many")
    assert proc.returncode == 2 and "--steps" in proc.stderr and "Traceback" not in proc.stderr


def test_an_empty_corpus_is_refused(tmp_path):
    nlp = spacy.blank("en")
    DocBin().to_disk(tmp_path / "empty.spacy")
    with pytest.raises(PruneError, match="empty.spacy holds no documents"):
        read_corpus(tmp_path / "empty.spacy", nlp, gold_preproc=True, option="--train")


def test_a_gpu_id_without_a_gpu_is_named_in_one_line(trained, tmp_path):
    import importlib.util

    if importlib.util.find_spec("cupy") is not None:
        pytest.skip("cupy is installed: --gpu-id 0 may be usable here")
    proc = run(trained / "trained", tmp_path / "out", "--train", trained / "data.spacy", "--dev", trained / "data.spacy", "--gpu-id", "0")
    assert_one_line_error(proc, "--gpu-id 0", "--gpu-id -1")
