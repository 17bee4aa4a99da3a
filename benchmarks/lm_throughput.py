"""Training throughput and memory of the dense LSTM LM with each output layer (CPU).

The same LD-Net encoder (10 densely connected LSTM layers, hidden 128, embed 50,
``LMConfig`` defaults, so the output layers read the 1330-wide dense output)
is trained with four output layers over a 100,000-word vocabulary:

* ``softmax``  full softmax (baseline)
* ``adaptive`` adaptive softmax, cut-offs (4000, 20000), div_value 4
* ``cosine``   ELMo-C continuous output, cosine loss (50-d target table)
* ``vmf``      ELMo-C continuous output, NLLvMF loss

Each training step is forward + backward + gradient clipping + Adam step on a
batch of ``--batch`` x ``--bptt`` synthetic tokens (every position counted as a
target). Token ids are drawn from a Zipf (1/rank) distribution so that the
adaptive softmax sees a realistic share of head / tail clusters; the continuous
target table is random (its values do not change the cost). After
``--warmup`` untimed steps, ``--steps`` steps are timed with
``time.perf_counter``; tokens/s = batch * bptt * steps / elapsed seconds.

Memory: every output layer runs in its own child process. ``peak_rss_mb`` is
the child's ``ru_maxrss`` (peak resident set size: torch runtime + model +
activations + gradients + Adam state + allocator caches); ``train_rss_delta_mb``
is the growth of ``ru_maxrss`` from just before the first training step to the
end, i.e. the memory that training itself adds on top of the built model.

Usage::

    python benchmarks/lm_throughput.py --threads 1 --steps 10
    python benchmarks/lm_throughput.py --outputs adaptive,cosine --json /tmp/x.json
"""
import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_JSON = ROOT / "benchmarks" / "results" / "lm_throughput.json"
OUTPUTS = ("softmax", "adaptive", "cosine", "vmf")


def _maxrss_mb() -> float:
    # Linux reports ru_maxrss in KiB (macOS in bytes).
    scale = 1.0 / 1024 if sys.platform != "darwin" else 1.0 / (1024 * 1024)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def run_worker(args: argparse.Namespace) -> dict:
    """Benchmark one output layer in this process; returns a JSON-able dict."""
    import torch

    sys.path.insert(0, str(ROOT))
    from spacy_ldnet.lm import DenseLSTMLM, LMConfig

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = LMConfig(vocab_size=args.vocab, output=args.worker, proj_dim=args.proj_dim)
    target_vectors = torch.randn(cfg.target_vocab_size, cfg.target_dim) if cfg.is_continuous else None
    model = DenseLSTMLM(cfg, target_vectors=target_vectors).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-3)
    zipf = 1.0 / torch.arange(1, args.vocab + 1, dtype=torch.float64)
    gen = torch.Generator().manual_seed(1)
    n_batches = args.warmup + args.steps
    stream = torch.multinomial(zipf, n_batches * args.batch * (args.bptt + 1), replacement=True, generator=gen)
    stream = stream.view(n_batches, args.batch, args.bptt + 1)
    lengths = torch.full((args.batch,), args.bptt, dtype=torch.long)

    def step(i: int) -> float:
        ids, targets = stream[i, :, :-1], stream[i, :, 1:]
        opt.zero_grad(set_to_none=True)
        out = model(ids, lengths, targets)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        return float(out.loss.detach())

    rss_before = _maxrss_mb()
    losses = [step(i) for i in range(args.warmup)]
    times = []
    for i in range(args.warmup, n_batches):
        t0 = time.perf_counter()
        losses.append(step(i))
        times.append(time.perf_counter() - t0)
    elapsed = sum(times)
    tokens = args.batch * args.bptt * args.steps
    counts = model.parameter_counts()
    return {
        "output": args.worker,
        "tokens_per_s": tokens / elapsed,
        "step_s_mean": elapsed / len(times),
        "step_s_min": min(times),
        "step_s_max": max(times),
        "timed_steps": len(times),
        "peak_rss_mb": round(_maxrss_mb(), 1),
        "train_rss_delta_mb": round(_maxrss_mb() - rss_before, 1),
        "params_total": counts["total"],
        "params_output_layer": counts["output_layer"],
        "loss_first": losses[0],
        "loss_last": losses[-1],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    ap.add_argument("--steps", type=int, default=10, help="timed training steps per output layer")
    ap.add_argument("--warmup", type=int, default=2, help="untimed warm-up steps")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--bptt", type=int, default=35, help="tokens per row")
    ap.add_argument("--vocab", type=int, default=100_000, help="vocabulary size (input and target)")
    ap.add_argument("--proj-dim", type=int, default=0, help="LMConfig.proj_dim (0: output layer reads the dense output)")
    ap.add_argument("--outputs", default=",".join(OUTPUTS), help="comma-separated subset of " + ",".join(OUTPUTS))
    ap.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"result file (default {DEFAULT_JSON})")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        print(json.dumps(run_worker(args)))
        return 0

    outputs = [o.strip() for o in args.outputs.split(",") if o.strip()]
    bad = [o for o in outputs if o not in OUTPUTS]
    if bad:
        ap.error(f"unknown outputs {bad}; choose from {OUTPUTS}")
    load_start = os.getloadavg() if hasattr(os, "getloadavg") else None
    results = []
    for output in outputs:
        cmd = [sys.executable, __file__, "--worker", output, "--threads", str(args.threads),
               "--steps", str(args.steps), "--warmup", str(args.warmup), "--batch", str(args.batch),
               "--bptt", str(args.bptt), "--vocab", str(args.vocab), "--proj-dim", str(args.proj_dim)]
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
        print(f"[lm_throughput] {output} ...", file=sys.stderr, flush=True)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return proc.returncode
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))

    base = next((r["tokens_per_s"] for r in results if r["output"] == "softmax"), None)
    for r in results:
        r["speedup_vs_softmax"] = round(r["tokens_per_s"] / base, 2) if base else None

    header = f"{'output':<9} {'tokens/s':>10} {'step s':>8} {'x softmax':>9} {'peak RSS MB':>11} {'train dRSS MB':>13} {'params':>11}"
    print(header)
    print("-" * len(header))
    for r in results:
        speed = f"{r['speedup_vs_softmax']:.2f}" if r["speedup_vs_softmax"] else "-"
        print(f"{r['output']:<9} {r['tokens_per_s']:>10.0f} {r['step_s_mean']:>8.3f} {speed:>9} "
              f"{r['peak_rss_mb']:>11.0f} {r['train_rss_delta_mb']:>13.0f} {r['params_total']:>11,}")

    import torch

    report = {
        "benchmark": "lm_throughput",
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "threads": args.threads,
        "device": "cpu",
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average_1_5_15min": {"start": load_start, "end": os.getloadavg() if hasattr(os, "getloadavg") else None},
        "setup": {
            "num_layers": 10, "hidden_dim": 128, "embed_dim": 50, "proj_dim": args.proj_dim,
            "vocab_size": args.vocab, "adaptive_cutoffs": [4000, 20000], "target_dim": 50,
            "batch": args.batch, "bptt": args.bptt, "warmup_steps": args.warmup, "timed_steps": args.steps,
            "optimizer": "Adam lr 1e-3, grad-norm clip 5", "token_distribution": "Zipf 1/rank",
        },
        "memory_method": "ru_maxrss of a child process per output layer; train_rss_delta_mb = "
                         "growth of ru_maxrss from before the first training step to the end",
        "results": results,
    }
    cont = [r["speedup_vs_softmax"] for r in results if r["output"] in ("cosine", "vmf") and r["speedup_vs_softmax"]]
    if cont:
        report["continuous_min_speedup_vs_softmax"] = min(cont)
        report["target_4x_met"] = min(cont) >= 4.0
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
