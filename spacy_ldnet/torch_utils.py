"""Small torch helpers shared by the torch modules (no spaCy or thinc imports)."""
from contextlib import contextmanager
from typing import Iterator

import torch


@contextmanager
def native_cpu_lstm() -> Iterator[None]:
    """Run LSTMs with torch's native CPU kernel instead of oneDNN.

    oneDNN builds a new RNN primitive for each packed-sequence shape; for the
    small, variable batches of sequence labelling the native kernel is about
    1.5-2x faster on CPU (``benchmarks/lstm_kernels.py``). No effect on GPU.
    """
    prev = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = prev
