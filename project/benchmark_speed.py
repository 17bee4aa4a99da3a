"""Run ``spacy benchmark speed`` and keep its figures as JSON.

Usage: python project/benchmark_speed.py PIPELINE DATA.spacy OUT.json [--threads N]
       [--batch-size B] [--batches N] [--warmup E]

The figure is spaCy's own (mean words/s over batches, with its bootstrap 95%
CI); this script only sets the torch thread count (OMP_NUM_THREADS), records
the machine, and parses the printed lines.
"""
import argparse
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("pipeline")
    p.add_argument("data")
    p.add_argument("output")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--batches", type=int, default=30)
    p.add_argument("--warmup", type=int, default=1)
    args = p.parse_args()
    cmd = [
        sys.executable, "-m", "spacy", "benchmark", "speed", args.pipeline, args.data,
        "--batch-size", str(args.batch_size), "--batches", str(args.batches), "--warmup", str(args.warmup),
    ]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), TQDM_DISABLE="1")
    print("Running:", " ".join(cmd), f"(OMP_NUM_THREADS={args.threads})", flush=True)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    sys.stdout.write(proc.stdout)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        return proc.returncode
    m = re.search(r"Mean: ([\d.]+) words/s \(95% CI: (-?[\d.]+) \+([\d.]+)\)", proc.stdout)
    if not m:
        print("Could not find the 'Mean: ... words/s' line in spaCy's output", file=sys.stderr)
        return 1
    mean, low, high = (float(x) for x in m.groups())
    result = {
        "words_per_second": mean,
        "ci95_low": mean + low,
        "ci95_high": mean + high,
        "command": " ".join(cmd),
        "torch_threads": args.threads,
        "cpu_count": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(f"Wrote {args.output}: {mean:,.0f} words/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
