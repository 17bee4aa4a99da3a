"""Project step ``pretrain``: provide the forward and backward LMs in OUT/{forward,backward}.

Usage: python project/pretrain_lms.py OUT --enabled 0|1 --data-dir DIR [--gpu N]
       [--max-time 6h] [--threads 1] [--runs lms/runs]
       python project/pretrain_lms.py --resume forward|backward [--data-dir DIR] [--max-time 12h]

* ``--enabled 0`` (the project default, ``vars.pretrain``): copy the LMs that
  ship with spacy_ldnet (``spacy_ldnet/lm/default``) to OUT. Nothing is trained.
* ``--enabled 1``: pretrain both directions with ``spacy-ldnet pretrain-lm``
  (the settings of the shipped LMs, docs/lm_pretraining.md) on
  DIR/lm/{wiki_en.train,reuters21578}.tok.txt.gz, for ``--max-time`` each;
  ``--gpu N`` (>= 0) trains on cuda:N with bfloat16 autocast. Runs go to
  ``--runs`` and resume when the step is run again (longer ``--max-time``
  continues them). The final models are exported to OUT in float16.
* ``--resume DIRECTION``: continue the run behind the shipped LM of that
  direction (``checkpoints/default-DIRECTION``, vocabulary
  ``checkpoints/vocab30k.txt``) with the same settings. Where that run's
  checkpoints are not on disk (a fresh clone), a new run in the same folder
  starts from the shipped LM's weights (``--init-from``, fresh Adam state) at
  the first corpus buffer it has not seen (``--start-buffer``, from its
  ``tokens_seen``); running it again resumes that run. Nothing is exported
  (``project/resume_lm.sh`` runs this niced; ``spacy-ldnet pretrain-lm``'s
  final model is in ``checkpoints/default-DIRECTION/model``).
"""
import argparse
import shutil
import subprocess
import sys
from pathlib import Path

FILES = ("config.json", "model.safetensors", "vocab.txt")


def pretrain_lm_command(
    files, valid, output, direction, vocab, device, max_time, threads, *, progress=False,
    hidden=128, batch_size=None, checkpoint_every=300, eval_every=1500, log_every=50,
):
    """The ``spacy-ldnet pretrain-lm`` argument list of the shipped LMs' settings
    (docs/lm_pretraining.md); the batch is 32 sentences on CPU, 128 on a GPU.

    The keywords change what the GPU runs change (``project/gpu_lms.py``): the
    LSTM width, the batch (None: the default above) and how often the run
    checkpoints, validates and logs (in steps)."""
    if batch_size is None:
        batch_size = 32 if device == "cpu" else 128
    return [
        "spacy-ldnet", "pretrain-lm",
        *[x for f in files for x in ("--train", str(f))],
        "--valid", str(valid), "--output", str(output), "--direction", direction,
        "--vocab", str(vocab), "--output-layer", "vmf", "--layers", "10", "--hidden", str(hidden),
        "--embed-dim", "50", "--input-embeddings", "glove", "--freeze-input", "--dropout", "0.0",
        "--layer-dropout", "0.1", "--batch-size", str(batch_size),
        "--lr", "0.001", "--max-time", max_time, "--checkpoint-every", str(checkpoint_every),
        "--eval-every", str(eval_every), "--valid-tokens", "20000", "--nn-eval-tokens", "20000",
        "--log-every", str(log_every), "--seed", "1", "--threads", str(threads), "--device", device,
        "--progress" if progress else "--no-progress",
    ]


def continue_shipped_args(direction, files):
    """``(extra pretrain-lm arguments, vocab path)`` that start a new run from the shipped LM.

    The run starts from its weights (``--init-from``) at the first corpus buffer
    it has not trained on (``--start-buffer``, counted from its ``tokens_seen``)."""
    import json

    from spacy_ldnet.embed.lm_embedder import default_lm_path
    from spacy_ldnet.lm.data import buffers_covering

    shipped = default_lm_path() / direction
    extra = json.loads((shipped / "config.json").read_text(encoding="utf-8"))["extra"]
    # a continued export records where in the corpus it stopped (it skipped text at its start)
    seen = int(extra.get("corpus_position_targets") or extra.get("tokens_seen")
               or extra.get("training", {}).get("tokens_seen", 0))
    start = buffers_covering(files, seen) if seen else 0
    print(f"No checkpoints of the shipped {direction} LM here: continuing its weights from {shipped} "
          f"({seen} targets seen) at corpus buffer {start}.", flush=True)
    return ["--init-from", str(shipped), "--start-buffer", str(start)], shipped / "vocab.txt"


def export_continuation(run_dir, dest, files):
    """Export the final model of a run started with ``--init-from`` to ``dest`` (float16).

    ``extra`` counts the whole history: steps and ``tokens_seen`` of the LM it
    started from plus this run's, and ``corpus_position_targets`` (where in
    the corpus this run stopped, so the next continuation starts after it)."""
    import json

    from spacy_ldnet.lm.data import targets_in_buffers
    from spacy_ldnet.lm.pretrain import export_model, read_log

    run_dir = Path(run_dir)
    log_path = run_dir / "log.jsonl"
    if not log_path.is_file():
        sys.exit(f"Error: {log_path} not found: {run_dir} is not a pretraining run directory. "
                 f"Fix: pass the run's checkpoint directory, e.g. checkpoints/default-backward.")
    events = read_log(log_path)  # skips a write cut off when the run was killed; the end check below refuses it
    start = next((e for e in events if e.get("event") == "start"), None)
    if start is None:
        sys.exit(f"Error: {log_path} has no start event, so the LM the run began from is unknown. "
                 f"Fix: export a run started with --init-from.")
    if not start.get("init_from"):
        sys.exit(f"Error: {run_dir} was not started with --init-from. Fix: export it with "
                 f"spacy_ldnet.lm.pretrain.export_model.")
    base = json.loads((Path(start["init_from"]) / "config.json").read_text(encoding="utf-8"))["extra"]
    base_steps = int(base.get("step") or base.get("training", {}).get("steps", 0))
    base_tokens = int(base.get("tokens_seen") or base.get("training", {}).get("tokens_seen", 0))
    last = events[-1]
    # a run resumed after an earlier end keeps the old model/ and metrics.json until it ends again
    if not (run_dir / "metrics.json").is_file() or last.get("event") != "end":
        sys.exit(f"Error: {run_dir} has no final model of its last steps (its log ends at step "
                 f"{last.get('step')}, {float(last.get('elapsed', 0)):.0f} s trained). Fix: let the run finish, "
                 f"or end it at its last checkpoint with `python project/pretrain_lms.py --resume "
                 f"{start.get('config', {}).get('direction', 'DIRECTION')} --max-time 1s` (it stops at once "
                 f"and writes model/ and metrics.json), then export again.")
    m = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    run_cfg = start.get("config", {})
    begin = targets_in_buffers(run_cfg.get("train") or files, int(start.get("start_buffer") or 0),
                               buffer_size=int(run_cfg.get("buffer_size", 20000)), max_len=int(run_cfg.get("max_len", 200)))
    out = export_model(run_dir, dest, dtype="float16")
    cfg_path = out / "config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    ex = cfg["extra"]
    ex["step"] = base_steps + int(m["step"])
    ex["tokens_seen"] = base_tokens + int(m["tokens_seen"])
    ex["corpus_position_targets"] = begin + int(m["tokens_seen"])
    ex["training"].update(
        steps=ex["step"], tokens_seen=ex["tokens_seen"],
        note=(f"{base_steps} steps / {base_tokens} tokens of {_portable(start['init_from'])}, then {m['step']} steps / "
              f"{m['tokens_seen']} tokens continued in {run_dir} from corpus buffer {start.get('start_buffer')} "
              f"(--init-from, fresh Adam)"),
    )
    # config.json is not covered by the weights file; rewrite it with the cumulative counts
    cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"Exported {run_dir} to {out}: {ex['tokens_seen']} tokens in all, corpus position {ex['corpus_position_targets']}.")
    return out


def _portable(path):
    """``path`` relative to the checkout when it lies inside it (no machine-specific prefix in exports)."""
    root = Path(__file__).resolve().parent.parent
    try:
        return str(Path(path).resolve().relative_to(root))
    except ValueError:
        return str(path)


def lm_corpus(data_dir):
    """(train files, valid file) under DATA_DIR/lm; exits with a message naming the fix if one is missing."""
    lm_dir = Path(data_dir) / "lm"
    files = [lm_dir / "wiki_en.train.tok.txt.gz", lm_dir / "reuters21578.tok.txt.gz"]
    valid = lm_dir / "wiki_en.valid.tok.txt.gz"
    for f in files + [valid]:
        if not f.is_file():
            sys.exit(f"Error: LM corpus file not found: {f}. Fix: set vars.data_dir (or --data-dir) to the folder holding lm/.")
    return files, valid


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("out", nargs="?")
    p.add_argument("--resume", choices=("forward", "backward"), default=None)
    p.add_argument("--enabled", type=int, default=0)
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--gpu", type=int, default=-1)
    p.add_argument("--max-time", default=None, help="default 6h; 12h with --resume")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", default="lms/runs")
    p.add_argument("--export-continuation", nargs=2, metavar=("RUN_DIR", "DEST"), default=None,
                   help="export a run started with --init-from (e.g. checkpoints/default-forward) to DEST, float16")
    args = p.parse_args()
    if args.export_continuation:
        files, _ = lm_corpus(args.data_dir)
        export_continuation(*args.export_continuation, files)
        return 0
    if args.resume:
        files, valid = lm_corpus(args.data_dir)
        direction, device = args.resume, "cpu" if args.gpu < 0 else f"cuda:{args.gpu}"
        run_dir = Path("checkpoints") / f"default-{direction}"
        vocab, extra_args = Path("checkpoints") / "vocab30k.txt", []
        if not (run_dir / "checkpoints").is_dir():
            extra_args, vocab = continue_shipped_args(direction, files)
        cmd = pretrain_lm_command(
            files, valid, run_dir, direction, vocab, device, args.max_time or "12h", args.threads, progress=True,
        ) + extra_args
        print("Running:", " ".join(cmd), flush=True)
        return subprocess.run(cmd).returncode
    if args.out is None:
        p.error("OUT is required unless --resume is given")
    out = Path(args.out)
    if not args.enabled:
        from spacy_ldnet.embed.lm_embedder import default_lm_path

        src = default_lm_path()
        for direction in ("forward", "backward"):
            (out / direction).mkdir(parents=True, exist_ok=True)
            for name in FILES:
                shutil.copyfile(src / direction / name, out / direction / name)
        print(f"Pretraining is off (vars.pretrain = 0): copied the shipped LMs from {src} to {out}.")
        return 0

    files, valid = lm_corpus(args.data_dir)
    runs = Path(args.runs)
    runs.mkdir(parents=True, exist_ok=True)
    vocab = runs / "vocab30k.txt"
    if not vocab.is_file():
        from spacy_ldnet.lm.data import build_vocab

        v, _ = build_vocab([str(f) for f in files], max_size=30000)
        v.save(str(vocab))
    device = f"cuda:{args.gpu}" if args.gpu >= 0 else "cpu"
    for direction in ("forward", "backward"):
        cmd = pretrain_lm_command(files, valid, runs / direction, direction, vocab, device, args.max_time or "6h", args.threads)
        print("Running:", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
    from spacy_ldnet.lm.pretrain import export_model

    for direction in ("forward", "backward"):
        export_model(runs / direction, out / direction, dtype="float16")
    print(f"Exported the pretrained LMs to {out}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
