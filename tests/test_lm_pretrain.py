"""Tests for LM pretraining (spacy_ldnet.lm.pretrain and the pretrain-lm CLI).

All runs use tiny models (2-3 layers, width 16-32) on tiny corpora written by
the tests, one torch thread per process. The 2-process DDP test
(``pytest -k ddp``) starts ``torchrun`` with two processes.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from spacy_ldnet.lm.checkpoint import load_lm
from spacy_ldnet.lm.training.state import load_state
from spacy_ldnet.lm.pretrain import (
    PretrainConfig,
    PretrainError,
    export_model,
    find_latest_checkpoint,
    param_digest,
    parse_duration,
    pretrain,
)

torch.set_num_threads(1)

SENTS = [
    "the cat sat on the mat .",
    "a dog ran in the park .",
    "the cat saw a dog .",
    "Zürich is a city in Switzerland .",
    "the dog sat on a mat in the park .",
    "she said the cat ran .",
    "he saw the city .",
    "a cat is in the city .",
]


def _corpus(path: Path, n: int = 240) -> Path:
    lines = []
    for i in range(n):
        lines.append(SENTS[i % len(SENTS)])
        if i % 12 == 11:
            lines.append("")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _cfg(tmp_path, name="run", **kw) -> PretrainConfig:
    corpus = tmp_path / "train.txt"
    if not corpus.exists():
        _corpus(corpus)
    base = dict(
        train=[str(corpus)],
        valid=str(corpus),
        output=str(tmp_path / name),
        output_layer="softmax",
        input_embeddings="random",
        freeze_input=False,
        layers=2,
        hidden=16,
        embed_dim=16,
        dropout=0.1,
        layer_dropout=0.1,
        batch_size=8,
        buffer_size=40,  # several buffers per epoch: resume crosses buffer borders
        max_steps=30,
        checkpoint_every=10,
        eval_every=15,
        log_every=5,
        valid_tokens=200,
        lr=3e-3,
        seed=3,
        threads=1,
        progress=False,
    )
    base.update(kw)
    return PretrainConfig(**base)


def _log(out_dir):
    return [json.loads(l) for l in (Path(out_dir) / "log.jsonl").read_text().splitlines()]


def test_parse_duration():
    assert parse_duration("40m") == 2400
    assert parse_duration("1h30m") == 5400
    assert parse_duration("90") == 90
    assert parse_duration("2.5s") == 2.5
    assert parse_duration(None) is None and parse_duration("0") is None
    with pytest.raises(ValueError):
        parse_duration("forty minutes")


def test_tiny_corpus_overfits(tmp_path):
    cfg = _cfg(tmp_path, max_steps=150, layers=3, hidden=32, dropout=0.0, layer_dropout=0.0,
               checkpoint_every=1000, eval_every=1000)
    summary = pretrain(cfg)
    log = _log(cfg.output)
    train = [r["loss"] for r in log if r["event"] == "train"]
    assert train[0] > 2.0
    # 8 distinct sentences: the LM memorises them (perplexity near the few real choices)
    assert summary["last_valid"]["valid_ppl"] < 2.0, summary["last_valid"]
    assert summary["step"] == 150 and summary["tokens_seen"] > 0
    # final model loads with the shared checkpoint reader
    model, vocab, extra = load_lm(Path(cfg.output) / "model")
    assert extra["direction"] == "forward" and extra["bos"] == "<s>" and extra["lowercase"] is True
    assert vocab[:4] == ["<pad>", "<unk>", "<s>", "</s>"] and "zürich" in vocab
    metrics = json.loads((Path(cfg.output) / "metrics.json").read_text())
    assert metrics["step"] == 150 and metrics["ranks_in_sync"]
    # fp16 export for shipping: half the size, same weights up to fp16 rounding, training summary kept
    dest = export_model(cfg.output, tmp_path / "shipped", dtype="float16")
    small, vocab16, extra16 = load_lm(dest)
    assert vocab16 == vocab and extra16["training"]["steps"] == 150
    assert extra16["training"]["last_valid"]["valid_ppl"] == metrics["last_valid"]["valid_ppl"]
    size32 = (Path(cfg.output) / "model" / "model.safetensors").stat().st_size
    assert (dest / "model.safetensors").stat().st_size < 0.6 * size32
    for (k, x), (_, y) in zip(model.state_dict().items(), small.state_dict().items()):
        assert torch.allclose(x.float(), y.float(), atol=1e-2, rtol=1e-2), k


class _Killed(Exception):
    pass


def _kill_at(step):
    def cb(s):
        if s == step:
            raise _Killed()

    return cb


@pytest.mark.parametrize("output_layer", ["softmax", "vmf"])
def test_kill_and_resume_is_exact(tmp_path, output_layer):
    kw = dict(output_layer=output_layer, direction="backward")
    if output_layer == "vmf":  # continuous output: GloVe targets and frozen GloVe inputs
        kw.update(input_embeddings="glove", freeze_input=True, embed_dim=50)
    full = pretrain(_cfg(tmp_path, "full", **kw))
    cfg = _cfg(tmp_path, "killed", **kw)
    with pytest.raises(_Killed):
        pretrain(cfg, step_callback=_kill_at(27))  # last checkpoint: step 20
    assert find_latest_checkpoint(cfg.output).name == "step-00000020"
    resumed = pretrain(cfg)
    assert resumed["step"] == full["step"] == 30
    assert resumed["tokens_seen"] == full["tokens_seen"]
    assert resumed["param_digests"] == full["param_digests"]
    a, _, _ = load_lm(Path(full["config"]["output"]) / "model")
    b, _, _ = load_lm(Path(cfg.output) / "model")
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), k
    # validation figures agree as well, and the log has no records from the lost steps
    assert resumed["last_valid"]["valid_loss"] == pytest.approx(full["last_valid"]["valid_loss"], abs=1e-9)
    steps = [r["step"] for r in _log(cfg.output) if r["event"] == "train"]
    assert steps == sorted(steps) and len(steps) == len(set(steps))
    if output_layer == "vmf":
        v = resumed["last_valid"]
        assert 0 <= v["nn_top1"] <= v["nn_top10"] <= 1 and v["valid_vector_target_fraction"] > 0.5


def test_no_resume_starts_over_and_finished_run_is_idempotent(tmp_path):
    cfg = _cfg(tmp_path, max_steps=10)
    first = pretrain(cfg)
    again = pretrain(cfg)  # resumes at step 10 == max_steps: nothing to do
    assert again["param_digests"] == first["param_digests"]
    cfg.max_steps = 12
    more = pretrain(cfg)
    assert more["step"] == 12
    cfg.resume = False
    fresh = pretrain(cfg)
    assert fresh["step"] == 12 and fresh["param_digests"] == more["param_digests"]  # same seed, from scratch
    assert _log(cfg.output)[0]["event"] == "start"


def test_corrupt_or_missing_checkpoint_errors(tmp_path):
    cfg = _cfg(tmp_path, max_steps=10, checkpoint_every=5)
    pretrain(cfg)
    ckpt = find_latest_checkpoint(cfg.output)
    # truncated weights
    weights = ckpt / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(PretrainError, match="model.safetensors") as e:
        pretrain(cfg)
    assert "--no-resume" in str(e.value)
    weights.write_bytes(data)
    # corrupt training state: either of its two files
    for name in ("trainer_state.json", "trainer_state.safetensors"):
        state = ckpt / name
        good = state.read_bytes()
        state.write_bytes(good[: len(good) // 2])
        with pytest.raises(PretrainError, match=name) as e:
            pretrain(cfg)
        assert "--no-resume" in str(e.value)
        state.write_bytes(good)
    (ckpt / "trainer_state.json").unlink()
    with pytest.raises(PretrainError, match="trainer_state.json"):
        pretrain(cfg)
    # pointer to a missing directory
    (Path(cfg.output) / "checkpoints" / "latest").write_text("step-00000099\n")
    with pytest.raises(PretrainError, match="latest"):
        pretrain(cfg)
    # --no-resume recovers
    cfg.resume = False
    assert pretrain(cfg)["step"] == 10


def test_resume_refuses_changed_settings(tmp_path):
    cfg = _cfg(tmp_path, max_steps=5, checkpoint_every=5)
    pretrain(cfg)
    cfg.max_steps, cfg.hidden = 10, 24
    with pytest.raises(PretrainError, match="hidden"):
        pretrain(cfg)


def test_max_time_stops(tmp_path):
    cfg = _cfg(tmp_path, max_steps=None, max_time=1.0, checkpoint_every=1000, eval_every=1000)
    summary = pretrain(cfg)
    assert 0 < summary["step"] and summary["elapsed_s"] < 30


def test_cli_runs(tmp_path):
    from typer.testing import CliRunner

    from spacy_ldnet.cli import app

    corpus = _corpus(tmp_path / "c.txt")
    out = tmp_path / "cli"
    args = ["pretrain-lm", "--train", str(corpus), "--valid", str(corpus), "--output", str(out),
            "--output-layer", "adaptive", "--input-embeddings", "random", "--embed-dim", "8",
            "--layers", "2", "--hidden", "8", "--cutoffs", "10", "--max-steps", "6",
            "--checkpoint-every", "3", "--eval-every", "3", "--no-progress", "--amp"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "step 6" in result.output
    assert (out / "model" / "model.safetensors").is_file()
    # a clear error, not a traceback
    bad = CliRunner().invoke(app, args[:-1] + ["--direction", "sideways"])
    assert bad.exit_code == 1 and "direction" in bad.output


# the pretrain-lm entry point of torchrun, recording the threads left once the command has
# returned (Linux: /proc/self/task/*/comm), before the interpreter shuts down
_CLI_RECORDING_THREADS = """
import json, os, sys
from spacy_ldnet.cli.pretrain_lm import main
try:
    main()
except SystemExit:
    task = "/proc/self/task"
    names = [open(f"{{task}}/{{t}}/comm").read().strip() for t in os.listdir(task)] if os.path.isdir(task) else ["?"]
    with open(os.path.join({out!r}, "threads-" + os.environ["RANK"] + ".json"), "w") as f:
        json.dump(names, f)
    raise
"""


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")
@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="thread names need Linux /proc")
def test_ddp_two_processes(tmp_path):
    """torchrun, 2 CPU processes x 1 thread (gloo): loss falls, ranks end identical,
    and no gloo thread outlives the command (one would abort the process at exit)."""
    corpus = _corpus(tmp_path / "c.txt", n=400)
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    script = tmp_path / "run_cli.py"
    script.write_text(_CLI_RECORDING_THREADS.format(out=str(tmp_path)), encoding="utf-8")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--standalone", str(script),
           "--train", str(corpus), "--valid", str(corpus), "--output", str(out),
           "--output-layer", "softmax", "--input-embeddings", "random", "--embed-dim", "16",
           "--layers", "2", "--hidden", "16", "--batch-size", "8", "--buffer-size", "40",
           "--max-steps", "60", "--checkpoint-every", "30", "--eval-every", "20",
           "--log-every", "5", "--valid-tokens", "300", "--lr", "0.003", "--threads", "1", "--no-progress"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    assert len(metrics["param_digests"]) == 2 and metrics["ranks_in_sync"]
    log = _log(out)
    train = [r["loss"] for r in log if r["event"] == "train"]
    valid = [r["valid_loss"] for r in log if r["event"] == "valid"]
    assert train[-1] < 0.7 * train[0] and valid[-1] < valid[0]
    # both shards were read: tokens per step ~ 2 x (one rank's batch)
    state = load_state(out / "checkpoints" / "step-00000060")
    assert [d["rank"] for d in state["data"]] == [0, 1] and len(state["rng"]) == 2
    model, _, _ = load_lm(out / "model")
    assert param_digest(model) == metrics["param_digests"][0]
    # the gloo worker threads were joined before the interpreter began to shut down
    threads = {r: json.loads((tmp_path / f"threads-{r}.json").read_text()) for r in (0, 1)}
    for rank, names in threads.items():
        assert names and not [n for n in names if "gloo" in n], (rank, names)


def _valid_loss(log):
    return [r["valid_loss"] for r in log if r["event"] == "valid"]


def test_init_from_export_continues_its_weights(tmp_path):
    # a first run, exported in float16 as the shipped LMs are
    first = _cfg(tmp_path, name="first", max_steps=60, dropout=0.0, layer_dropout=0.0,
                 checkpoint_every=1000, eval_every=1000)
    s1 = pretrain(first)
    export = export_model(first.output, tmp_path / "export", dtype="float16")
    # a new run from the export, 0 extra steps of learning rate: the validation
    # loss is the export's (fp16 rounding only), far from a fresh model's
    cont = _cfg(tmp_path, name="cont", max_steps=1, lr=1e-12, dropout=0.0, layer_dropout=0.0,
                checkpoint_every=1000, eval_every=1000, init_from=str(export), seed=9)
    s2 = pretrain(cont)
    fresh = pretrain(_cfg(tmp_path, name="fresh", max_steps=1, lr=1e-12, seed=9,
                          checkpoint_every=1000, eval_every=1000))
    l1, l2, l0 = (s["last_valid"]["valid_loss"] for s in (s1, s2, fresh))
    assert abs(l2 - l1) < 0.02 * abs(l1), (l1, l2)
    assert l0 > l1 + 0.5, (l0, l1)
    start = [r for r in _log(cont.output) if r["event"] == "start"][0]
    assert start["init_from"] == str(export)
    assert (Path(cont.output) / "vocab.txt").read_text() == (export / "vocab.txt").read_text()
    # an export of another architecture is refused with the setting named
    with pytest.raises(PretrainError, match="hidden"):
        pretrain(_cfg(tmp_path, name="bad", hidden=24, init_from=str(export)))
    with pytest.raises(PretrainError, match="not a directory"):
        pretrain(_cfg(tmp_path, name="bad2", init_from=str(tmp_path / "nope")))


def test_start_buffer_skips_the_first_buffers(tmp_path):
    # distinct sentences per buffer: buffer 0 holds "alpha", buffer 1 "beta"
    corpus = tmp_path / "ab.txt"
    corpus.write_text("\n".join(["alpha alpha ."] * 40 + ["beta beta ."] * 40) + "\n", encoding="utf-8")
    cfg = _cfg(tmp_path, name="skip", train=[str(corpus)], valid=str(corpus), buffer_size=40,
               batch_size=8, max_steps=5, start_buffer=1, checkpoint_every=1000, eval_every=1000)
    seen = []
    from spacy_ldnet.lm.training.batches import BatchStream

    orig = BatchStream.__iter__

    def spy(self):
        for b in orig(self):
            seen.append(b.token_ids.clone())
            yield b

    BatchStream.__iter__ = spy
    try:
        pretrain(cfg)
    finally:
        BatchStream.__iter__ = orig
    vocab = (Path(cfg.output) / "vocab.txt").read_text().split("\n")
    alpha, beta = vocab.index("alpha"), vocab.index("beta")
    ids = torch.cat([t.flatten() for t in seen])
    assert (ids == beta).any() and not (ids == alpha).any()
    with pytest.raises(PretrainError, match="start-buffer"):
        pretrain(_cfg(tmp_path, name="neg", start_buffer=-1))
