"""Small torch helpers shared by the torch modules (no spaCy or thinc imports)."""
from contextlib import contextmanager
from typing import Iterator

import torch


@contextmanager
def native_cpu_lstm() -> Iterator[None]:
    """Run LSTMs with torch's native CPU kernel instead of oneDNN.

    The native kernel handles packed, variable-length batches at least as
    fast as oneDNN on one thread, and faster when the cores are shared
    (docs/results.md, "Settings chosen by measurement"). No effect on GPU.
    """
    prev = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = prev


def run_lstm(lstm: torch.nn.LSTM, packed: torch.nn.utils.rnn.PackedSequence) -> torch.nn.utils.rnn.PackedSequence:
    """Run ``lstm`` over a packed batch and return its packed outputs.

    On a GPU the weights are first compacted into cuDNN's single buffer
    (``flatten_parameters``): thinc's optimizer gives every parameter new
    storage after each step (``PyTorchShim.finish_update`` assigns
    ``param.data``), after which cuDNN would copy the weights on every call and
    torch warns "RNN module weights are not part of single contiguous chunk of
    memory". On a CPU ``flatten_parameters`` does nothing and the LSTM runs under
    :func:`native_cpu_lstm`.

    Args:
        lstm: a ``batch_first`` ``nn.LSTM``.
        packed: a ``PackedSequence`` of its inputs, (N, input_size) rows.
    Returns:
        The packed outputs, (N, num_directions * hidden_size) rows.
    """
    lstm.flatten_parameters()
    with native_cpu_lstm():
        out, _ = lstm(packed)
    return out


_HEAP_LIMITED = False


def limit_heap_growth(threshold: int = 4 << 20) -> bool:
    """Pin glibc's mmap threshold so large, short-lived buffers go back to the OS.

    Why: each training step allocates and frees several ~10 MB buffers (the
    dense gradient of the fine-tuned embedding table, Adam temporaries). glibc
    raises its mmap threshold after the first such free and then serves them
    from the heap, which fragments: ``spacy train`` grows by about the size of
    those buffers per step. A fixed threshold (``mallopt(M_MMAP_THRESHOLD,
    threshold)``, in bytes, 4 MiB by default) keeps the process flat; a much
    lower one costs training speed in page faults.

    Linux/glibc only; a no-op elsewhere, when already done, or when the
    environment sets ``SPACY_LDNET_NO_MALLOPT=1``. Returns True if applied.
    """
    global _HEAP_LIMITED
    import os
    import sys

    if _HEAP_LIMITED or not sys.platform.startswith("linux") or os.environ.get("SPACY_LDNET_NO_MALLOPT") == "1":
        return _HEAP_LIMITED
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        M_MMAP_THRESHOLD = -3
        _HEAP_LIMITED = bool(libc.mallopt(M_MMAP_THRESHOLD, int(threshold)))
    except (OSError, AttributeError):  # not glibc (musl, ...)
        _HEAP_LIMITED = False
    return _HEAP_LIMITED
