"""Time of one packed LSTM call in fp32 and as torch's dynamically quantized
int8 LSTM, for the LSTM shapes of an ``ldnet_ner`` pipeline.

Usage::

    python benchmarks/int8_lstm.py [--shapes 200x200x2,434x128x1,50x128x1] [--batch 128] [--rounds 7]

Each shape is ``INPUTxHIDDENxDIRECTIONS``. The batch is ``--batch`` random
sequences with CoNLL-2003-like sentence lengths (1-60 tokens, mean about 14),
packed; one torch thread, the native CPU kernel for fp32 (as the pipeline
predicts), best of ``--rounds`` after one warm-up call. Prints milliseconds
per call, the fp32/int8 ratio and the largest output difference.
"""
import argparse
import random
import time
import warnings

import torch
from torch.nn.utils.rnn import pack_padded_sequence

from spacy_ldnet.torch_utils import native_cpu_lstm


def best_ms(fn, rounds: int) -> float:
    fn()
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shapes", default="200x200x2,434x128x1,50x128x1")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--rounds", type=int, default=7)
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rng = random.Random(0)
    lengths = torch.tensor([max(1, min(60, int(rng.expovariate(1 / 14)))) for _ in range(args.batch)])
    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"{args.batch} sequences, {int(lengths.sum())} tokens")
    for shape in args.shapes.split(","):
        size, hidden, directions = (int(x) for x in shape.split("x"))
        lstm = torch.nn.LSTM(size, hidden, batch_first=True, bidirectional=directions == 2).eval()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch announces that eager quantization moves to torchao
            int8 = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(lstm), {torch.nn.LSTM}, dtype=torch.qint8)
        packed = pack_padded_sequence(torch.randn(args.batch, int(lengths.max()), size), lengths, batch_first=True, enforce_sorted=False)
        with torch.no_grad(), native_cpu_lstm():
            fp32_ms = best_ms(lambda: lstm(packed), args.rounds)
            int8_ms = best_ms(lambda: int8(packed), args.rounds)
            diff = float((lstm(packed)[0].data - int8(packed)[0].data).abs().max())
        print(f"input {size}, hidden {hidden}, {directions} direction(s): fp32 {fp32_ms:.1f} ms, int8 {int8_ms:.1f} ms, "
              f"ratio {fp32_ms / int8_ms:.2f}, max |diff| {diff:.3f}")


if __name__ == "__main__":
    main()
