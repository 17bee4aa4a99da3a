"""How often a two-process DDP pretraining job exits cleanly.

Usage:
    python benchmarks/ddp_exit.py [--runs 50] [--load 1] [--steps 4] [--json PATH]

Runs ``torchrun --nproc_per_node 2 --standalone -m spacy_ldnet.cli.pretrain_lm``
(gloo, one thread per process) ``--runs`` times on a tiny corpus and model
written to a temporary folder, each run with a new ``--output``. ``--load N``
starts N CPU-bound processes (``while True: pass``) for the whole benchmark,
so that the ranks are descheduled at arbitrary moments, as on a busy machine;
they are ended when the benchmark ends.

A run is counted as

* ``ok``: exit status 0 and a ``metrics.json`` with ``world_size`` 2;
* ``abort``: a rank died of SIGABRT (torchrun reports ``exitcode  : -6``, or
  the C++ runtime printed ``terminate called``);
* ``failed``: any other non-zero exit status, a missing ``metrics.json``, or
  a run longer than ``--timeout`` seconds.

Prints the counts and the wall time; ``--json`` also writes them with one
record per run (status, seconds, exit status, and the end of the output of
runs that were not ok).
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SENTENCES = ["the cat sat on the mat .", "a dog ran in the park .", "the cat saw a dog .", "he saw the city ."]


def command(corpus: Path, output: Path, steps: int) -> list:
    """The torchrun command line of one run: a 1-layer, 8-wide LM trained for ``steps`` steps."""
    return [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
        "-m", "spacy_ldnet.cli.pretrain_lm",
        "--train", str(corpus), "--valid", str(corpus), "--output", str(output),
        "--output-layer", "softmax", "--input-embeddings", "random", "--embed-dim", "8",
        "--layers", "1", "--hidden", "8", "--batch-size", "4", "--buffer-size", "20",
        "--max-steps", str(steps), "--checkpoint-every", "2", "--eval-every", "2", "--valid-tokens", "50",
        "--threads", "1", "--no-progress", "--no-resume",
    ]


def classify(returncode, output: str, out_dir: Path) -> str:
    """``ok``, ``abort`` or ``failed`` (see the module docstring)."""
    if returncode is None:
        return "failed"
    if "exitcode  : -6" in output or "SIGABRT" in output or "terminate called" in output:
        return "abort"
    metrics = out_dir / "metrics.json"
    if returncode != 0 or not metrics.is_file():
        return "failed"
    return "ok" if json.loads(metrics.read_text(encoding="utf-8")).get("world_size") == 2 else "failed"


def one_run(corpus: Path, output: Path, steps: int, timeout: float) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(command(corpus, output, steps), env=env, cwd=ROOT, capture_output=True,
                              text=True, timeout=timeout)
        rc, text = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as e:
        rc, text = None, f"timed out after {timeout} s\n{e.stdout or ''}{e.stderr or ''}"
    status = classify(rc, text, output)
    record = {"status": status, "seconds": round(time.perf_counter() - t0, 2), "returncode": rc}
    if status != "ok":
        record["output_tail"] = text[-2000:]
    return record


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--load", type=int, default=0, help="CPU-bound processes running beside the runs")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--timeout", type=float, default=180.0, help="seconds allowed per run")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)
    if a.runs < 1 or a.load < 0 or a.steps < 1:
        p.error("--runs and --steps must be >= 1, --load >= 0")
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(a.load)]
    records, t0 = [], time.perf_counter()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            corpus = Path(tmp) / "corpus.txt"
            corpus.write_text("\n".join(SENTENCES[i % len(SENTENCES)] for i in range(80)) + "\n", encoding="utf-8")
            for i in range(a.runs):
                records.append(one_run(corpus, Path(tmp) / f"run{i:03d}", a.steps, a.timeout))
                print(f"run {i + 1}/{a.runs}: {records[-1]['status']} ({records[-1]['seconds']} s)", flush=True)
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()
    counts = {s: sum(r["status"] == s for r in records) for s in ("ok", "abort", "failed")}
    wall = time.perf_counter() - t0
    print(f"{a.runs} runs, load {a.load}: {counts['ok']} ok, {counts['abort']} aborts, "
          f"{counts['failed']} other failures; {wall:.0f} s ({wall / a.runs:.1f} s per run)")
    if a.json:
        import torch

        summary = {
            "runs": a.runs, "load_processes": a.load, "steps": a.steps, **counts, "wall_seconds": round(wall, 1),
            "cpu_count": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "command": " ".join(command(Path("CORPUS"), Path("OUTPUT"), a.steps)[1:]), "records": records,
        }
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return 0 if counts["ok"] == a.runs else 1


if __name__ == "__main__":
    sys.exit(main())
