"""Forward + backward time of a bidirectional LSTM over a packed batch on a CPU:
torch's packed kernel (``nn.LSTM(packed)``) against ``padded_lstm``, which
``run_lstm`` uses whenever a graph is recorded on a CPU.

Usage::

    python benchmarks/lstm_backward.py [--sequences 32] [--min-length 120] [--max-length 300] \\
        [--input 30] [--hidden 50] [--rounds 5]

The defaults are a training batch of the character BiLSTM (32 sentences as
character streams of 120-300 characters, 30-wide embeddings, 50 units per
direction). Prints seconds per forward + backward, median of the rounds, of
each path (interleaved) and the largest output difference at real positions.
One torch thread.
"""
import argparse
import statistics
import time

import torch
from torch.nn.utils.rnn import pack_padded_sequence

from spacy_ldnet.torch_utils import native_cpu_lstm, padded_lstm


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sequences", type=int, default=32)
    p.add_argument("--min-length", type=int, default=120)
    p.add_argument("--max-length", type=int, default=300)
    p.add_argument("--input", type=int, default=30)
    p.add_argument("--hidden", type=int, default=50)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(args.input, args.hidden, batch_first=True, bidirectional=True)
    lengths = torch.randint(args.min_length, args.max_length + 1, (args.sequences,))
    X = torch.randn(args.sequences, int(lengths.max()), args.input, requires_grad=True)

    def packed_path():
        with native_cpu_lstm():
            return lstm(pack_padded_sequence(X, lengths, batch_first=True, enforce_sorted=False))[0].data

    def padded_path():
        return padded_lstm(lstm, pack_padded_sequence(X, lengths, batch_first=True, enforce_sorted=False))

    diff = (packed_path() - padded_path()).abs().max().item()
    times = {"packed": [], "padded": []}
    for _ in range(args.rounds):
        for name, run in (("packed", packed_path), ("padded", padded_path)):
            start = time.perf_counter()
            run().sum().backward()
            times[name].append(time.perf_counter() - start)
    packed, padded = statistics.median(times["packed"]), statistics.median(times["padded"])
    print(f"{args.sequences} sequences of {args.min_length}-{args.max_length} steps, "
          f"input {args.input}, hidden {args.hidden} x 2 directions")
    print(f"packed kernel: {packed:.3f} s per forward + backward")
    print(f"padded_lstm:   {padded:.3f} s per forward + backward ({packed / padded:.2f}x)")
    print(f"largest output difference: {diff:.2e}")


if __name__ == "__main__":
    main()
