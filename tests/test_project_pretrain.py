"""project/pretrain_lms.py: the one argument list of the shipped LMs' recipe."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from conftest import load_script

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "project" / "pretrain_lms.py"


def _load_script():
    return load_script(SCRIPT, "pretrain_lms")


def _parse(cmd):
    """The keyword arguments `spacy-ldnet pretrain-lm` would get for CMD."""
    from spacy_ldnet.cli.pretrain_lm import pretrain_lm

    assert cmd[:2] == ["spacy-ldnet", "pretrain-lm"]
    app = typer.Typer()
    app.command()(pretrain_lm)
    command = typer.main.get_command(app)
    return command.make_context("pretrain-lm", list(cmd[2:])).params


@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_recipe_builds_the_shipped_architecture(direction):
    """The recipe `pretrain` (and resume_lm.sh) runs must train the model the
    package ships: a drift in either breaks resuming the shipped runs."""
    from spacy_ldnet.embed.lm_embedder import default_lm_path

    mod = _load_script()
    cmd = mod.pretrain_lm_command(["a.txt.gz", "b.txt.gz"], "v.txt.gz", "out", direction, "vocab.txt", "cpu", "1h", 1)
    params = _parse(cmd)
    shipped = json.loads((default_lm_path() / direction / "config.json").read_text())
    assert params["direction"] == shipped["direction"] == direction
    assert params["layers"] == shipped["num_layers"]
    assert params["hidden"] == shipped["hidden_dim"]
    assert params["embed_dim"] == shipped["embed_dim"]
    assert params["output_layer"] == shipped["output"]
    assert params["dropout"] == shipped["dropout"]
    assert params["layer_dropout"] == shipped["layer_dropout"]
    assert params["freeze_input"] == shipped["freeze_input"]
    assert params["input_embeddings"] == shipped["extra"]["input_embeddings"]
    assert [Path(p).name for p in params["train"]] == ["a.txt.gz", "b.txt.gz"]
    assert params["batch_size"] == 32 and params["progress"] is False
    gpu = _parse(mod.pretrain_lm_command(["a"], "v", "o", direction, "vocab", "cuda:0", "1h", 1, progress=True))
    assert gpu["batch_size"] == 128 and gpu["device"] == "cuda:0" and gpu["progress"] is True


def test_resume_with_missing_corpus_names_file_and_fix(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--resume", "backward", "--data-dir", str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert proc.returncode != 0
    assert str(tmp_path / "lm" / "wiki_en.train.tok.txt.gz") in proc.stderr
    assert "--data-dir" in proc.stderr


def test_out_is_required_without_resume(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and "OUT is required" in proc.stderr


def test_continue_shipped_starts_past_the_text_it_saw(tmp_path, monkeypatch):
    """Without the shipped run's checkpoints, --resume starts from the shipped
    weights at the first corpus buffer they have not seen."""
    import spacy_ldnet.embed.lm_embedder as lm_embedder
    from spacy_ldnet.lm.data import LMDataError

    shipped = tmp_path / "shipped"
    (shipped / "forward").mkdir(parents=True)
    (shipped / "forward" / "config.json").write_text(json.dumps({"extra": {"tokens_seen": 20000 * 4 + 1}}))
    monkeypatch.setattr(lm_embedder, "default_lm_path", lambda: shipped)
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(["a b c"] * 50000) + "\n", encoding="utf-8")  # 4 targets per line
    mod = _load_script()
    extra, vocab = mod.continue_shipped_args("forward", [corpus])
    assert extra == ["--init-from", str(shipped / "forward"), "--start-buffer", "2"]
    assert vocab == shipped / "forward" / "vocab.txt"
    params = _parse(mod.pretrain_lm_command([corpus], corpus, "o", "forward", vocab, "cpu", "1h", 1) + extra)
    assert params["start_buffer"] == 2 and Path(params["init_from"]) == shipped / "forward"
    (shipped / "forward" / "config.json").write_text(json.dumps({"extra": {"tokens_seen": 10**7}}))
    with pytest.raises(LMDataError, match="second epoch"):
        mod.continue_shipped_args("forward", [corpus])


def test_export_continuation_counts_the_whole_history(tmp_path):
    """A continued LM's export carries the tokens of both runs and where in the
    corpus it stopped, so the next continuation starts after it."""
    import torch

    from spacy_ldnet.lm.checkpoint import load_lm
    from spacy_ldnet.lm.data import targets_in_buffers
    from spacy_ldnet.lm.pretrain import PretrainConfig, export_model, pretrain

    torch.set_num_threads(1)
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(f"the cat {w} on the mat ." for w in ["sat", "ran", "lay", "sat"] * 30) + "\n",
                      encoding="utf-8")
    base = dict(train=[str(corpus)], output_layer="softmax", input_embeddings="random", freeze_input=False,
                layers=2, hidden=16, embed_dim=16, batch_size=8, buffer_size=20, checkpoint_every=1000,
                eval_every=1000, max_steps=4, seed=1, progress=False)
    first = pretrain(PretrainConfig(output=str(tmp_path / "a"), **base))
    shipped = export_model(tmp_path / "a", tmp_path / "shipped")
    second = pretrain(PretrainConfig(output=str(tmp_path / "b"), init_from=str(shipped), start_buffer=2, **base))
    mod = _load_script()
    out = mod.export_continuation(tmp_path / "b", tmp_path / "cont", [corpus])
    _, vocab, extra = load_lm(out)
    assert extra["tokens_seen"] == first["tokens_seen"] + second["tokens_seen"]
    assert extra["step"] == 8 and extra["training"]["steps"] == 8
    assert extra["corpus_position_targets"] == targets_in_buffers([corpus], 2, buffer_size=20) + second["tokens_seen"]
    assert targets_in_buffers([corpus], 2, buffer_size=20) == 2 * 20 * 8  # 7 tokens + end of sentence
    assert str(tmp_path / "b") in extra["training"]["note"]
    # a run not started from an export is refused with the fix named
    with pytest.raises(SystemExit, match="init-from"):
        mod.export_continuation(tmp_path / "a", tmp_path / "x", [corpus])
    # a run resumed after its end and stopped again (model/ and metrics.json are of the earlier end),
    # or one stopped before any end (no metrics.json), is refused with the fix named; nothing is written
    with (tmp_path / "b" / "log.jsonl").open("a", encoding="utf-8") as f:
        f.write(json.dumps({"event": "train", "step": 6, "elapsed": 3.0}) + "\n")
    with pytest.raises(SystemExit, match="no final model of its last steps.*step 6.*--max-time 1s"):
        mod.export_continuation(tmp_path / "b", tmp_path / "y", [corpus])
    (tmp_path / "b" / "metrics.json").unlink()
    with pytest.raises(SystemExit, match="no final model of its last steps"):
        mod.export_continuation(tmp_path / "b", tmp_path / "y", [corpus])
    assert not (tmp_path / "y").exists()
    # a directory that is not a run (no log.jsonl) is refused with the fix named, not a raw OSError
    with pytest.raises(SystemExit, match="log.jsonl not found.*checkpoint directory"):
        mod.export_continuation(tmp_path / "shipped", tmp_path / "z", [corpus])
    assert not (tmp_path / "z").exists()
    # a log whose last write was cut off, or one without a start event, is refused with the fix named
    log = (tmp_path / "b" / "log.jsonl").read_text(encoding="utf-8")
    (tmp_path / "b" / "log.jsonl").write_text(log + '{"event": "tra', encoding="utf-8")
    with pytest.raises(SystemExit, match="no final model of its last steps.*step 6.*--max-time 1s"):
        mod.export_continuation(tmp_path / "b", tmp_path / "z", [corpus])
    (tmp_path / "b" / "log.jsonl").write_text(json.dumps({"event": "end"}) + "\n", encoding="utf-8")
    with pytest.raises(SystemExit, match="no start event"):
        mod.export_continuation(tmp_path / "b", tmp_path / "z", [corpus])
    assert not (tmp_path / "z").exists()
    # the note names an LM inside the checkout by its path relative to the checkout
    root = Path(mod.__file__).resolve().parent.parent
    assert mod._portable(root / "spacy_ldnet" / "lm") == str(Path("spacy_ldnet") / "lm")
    assert mod._portable(tmp_path) == str(tmp_path)
