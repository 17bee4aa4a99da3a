"""CPU LSTM kernels: oneDNN vs torch's native kernel on packed, variable-length batches.

Prints seconds per forward+backward step for the two LSTM shapes of
``ldnet_ner`` (character BiLSTM, word BiLSTM) and writes JSON. This is the
measurement behind :func:`spacy_ldnet.torch_utils.native_cpu_lstm`.

Usage: python benchmarks/lstm_kernels.py [--threads 1] [--steps 10] [--output PATH]
"""
import argparse
import json
import os
import time
from pathlib import Path

import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

SHAPES = {
    # name: (batch, max length, input width, hidden per direction)
    "char BiLSTM 32 seqs x 120 chars, 30->50": (32, 120, 30, 50),
    "word BiLSTM 32 seqs x 30 tokens, 100->200": (32, 30, 100, 200),
    "char BiLSTM 128 seqs x 300 chars, 30->50": (128, 300, 30, 50),
}


def step_time(onednn: bool, B: int, T: int, din: int, h: int, steps: int) -> float:
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(din, h, batch_first=True, bidirectional=True)
    prev = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = onednn
    try:
        times = []
        for i in range(steps + 2):
            lengths = torch.randint(T // 3, T + 1, (B,))
            lengths[0] = T
            x = torch.randn(B, T, din, requires_grad=True)
            t0 = time.perf_counter()
            packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            out, _ = lstm(packed)
            out, _ = pad_packed_sequence(out, batch_first=True)
            out.sum().backward()
            if i >= 2:  # two warm-up steps
                times.append(time.perf_counter() - t0)
        return sum(times) / len(times)
    finally:
        torch.backends.mkldnn.enabled = prev


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--output", default="benchmarks/results/lstm_kernels.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    print(f"{'shape':<45} {'oneDNN s/step':>14} {'native s/step':>14} {'speed-up':>9}")
    for name, shape in SHAPES.items():
        a = step_time(True, *shape, args.steps)
        b = step_time(False, *shape, args.steps)
        rows.append({"shape": name, "onednn_s": a, "native_s": b, "speedup": a / b})
        print(f"{name:<45} {a:14.4f} {b:14.4f} {a / b:8.2f}x")
    result = {
        "threads": args.threads,
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "torch": torch.__version__,
        "rows": rows,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(f"Wrote {args.output}")


if __name__ == "__main__":
    main()
