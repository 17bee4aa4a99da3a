"""Small torch helpers shared by the torch modules (no spaCy or thinc imports)."""
import contextlib
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

    On a CPU with gradients (training), the packed batch runs as a padded one
    (:func:`padded_lstm`): the CPU kernel's backward over packed input
    zero-fills a gradient of the whole input at every time step, which is
    quadratic in the sequence length. The outputs at real positions are the
    same up to float rounding; nothing reads the padding.

    Args:
        lstm: a ``batch_first`` ``nn.LSTM`` (or a dynamically quantized one).
        packed: a ``PackedSequence`` of its inputs, (N, input_size) rows.
    Returns:
        The packed outputs, (N, num_directions * hidden_size) rows, in the
        order of ``packed``.
    """
    if hasattr(lstm, "flatten_parameters"):  # quantized LSTMs have none
        lstm.flatten_parameters()
    if backward_on_cpu(lstm, packed):
        return packed._replace(data=padded_lstm(lstm, packed))
    with native_cpu_lstm():
        out, _ = lstm(packed)
    return out


def backward_on_cpu(lstm: torch.nn.LSTM, packed: torch.nn.utils.rnn.PackedSequence) -> bool:
    """True when ``lstm(packed)`` would run on a CPU and record a graph for backward."""
    return (
        packed.data.device.type == "cpu"
        and torch.is_grad_enabled()
        and (packed.data.requires_grad or any(p.requires_grad for p in lstm.parameters()))
    )


def padded_lstm(lstm: torch.nn.LSTM, packed: torch.nn.utils.rnn.PackedSequence) -> torch.Tensor:
    """``lstm(packed).data`` computed on the padded batch, with a backward
    pass linear in the sequence length (:func:`lstm_over_padded` on the
    native kernel).

    Args:
        lstm: a ``batch_first`` ``nn.LSTM`` without ``proj_size``.
        packed: a ``PackedSequence`` of (N, input_size) rows.
    Returns:
        (N, num_directions * hidden_size) rows in the packed order of ``packed``.
    Raises:
        ValueError: ``lstm`` has ``proj_size`` or is not ``batch_first``.
    """
    batch_sizes = packed.batch_sizes  # (T,) on CPU, non-increasing
    S, T = int(batch_sizes[0]), int(batch_sizes.shape[0])
    # Packed row r holds (time t, sorted rank j): time-major blocks of batch_sizes[t] rows.
    time_of_row = torch.repeat_interleave(torch.arange(T), batch_sizes)  # (N,)
    rank_of_row = torch.arange(time_of_row.shape[0]) - (torch.cumsum(batch_sizes, 0) - batch_sizes)[time_of_row]  # (N,)
    lengths = (batch_sizes.unsqueeze(0) > torch.arange(S).unsqueeze(1)).sum(1)  # (S,) per sorted rank
    x = packed.data.new_zeros((S, T, packed.data.shape[-1]))  # (S, T, D), ranks in length order
    x = x.index_put((rank_of_row, time_of_row), packed.data)
    return lstm_over_padded(lstm, x, lengths)[rank_of_row, time_of_row]  # (N, n_dir * H)


def lstm_over_padded(lstm: torch.nn.LSTM, x: torch.Tensor, lengths: torch.Tensor, *, onednn: bool = False) -> torch.Tensor:
    """All layers of ``lstm`` over a padded batch, exact at the real positions.

    Each direction of each layer runs ``torch.lstm`` over the (S, T, D) rows;
    the reverse direction reads every sequence reversed within its own length,
    so padding only ever follows the real positions and never reaches them.
    Dropout between layers as ``nn.LSTM`` (training only).

    Args:
        lstm: a ``batch_first`` ``nn.LSTM`` without ``proj_size``.
        x: (S, T, input_size) float, zero or anything at padding.
        lengths: (S,) long on CPU, each in [1, T].
        onednn: run on oneDNN (torch's default CPU choice for padded input)
            instead of the native kernel (:func:`native_cpu_lstm`).
    Returns:
        (S, T, num_directions * hidden_size); rows at padding are arbitrary.
    Raises:
        ValueError: ``lstm`` has ``proj_size`` or is not ``batch_first``.
    """
    if lstm.proj_size or not lstm.batch_first:
        raise ValueError("padded_lstm needs a batch_first nn.LSTM without proj_size")
    S, T = x.shape[0], x.shape[1]
    steps = torch.arange(T).unsqueeze(0)  # (1, T)
    n = lengths.cpu().unsqueeze(1)  # (S, 1)
    reverse = torch.where(steps < n, n - 1 - steps, steps).to(x.device)  # (S, T) mirror within the length
    n_dir = 2 if lstm.bidirectional else 1
    H = lstm.hidden_size
    kernel = contextlib.nullcontext if onednn else native_cpu_lstm
    for layer in range(lstm.num_layers):
        outs = []
        for d in range(n_dir):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            weights = [getattr(lstm, f"weight_ih{sfx}"), getattr(lstm, f"weight_hh{sfx}")]
            if lstm.bias:
                weights += [getattr(lstm, f"bias_ih{sfx}"), getattr(lstm, f"bias_hh{sfx}")]
            h0 = x.new_zeros((1, S, H))  # (1, S, H)
            inp = x if d == 0 else x.gather(1, reverse.unsqueeze(-1).expand(-1, -1, x.shape[-1]))  # (S, T, D)
            with kernel():
                out, _, _ = torch.lstm(inp, (h0, h0), weights, lstm.bias, 1, 0.0, lstm.training, False, True)  # (S, T, H)
            outs.append(out if d == 0 else out.gather(1, reverse.unsqueeze(-1).expand(-1, -1, H)))
        x = outs[0] if n_dir == 1 else torch.cat(outs, dim=-1)  # (S, T, n_dir * H)
        if layer + 1 < lstm.num_layers and lstm.dropout > 0:
            x = torch.nn.functional.dropout(x, lstm.dropout, lstm.training)
    return x


def packed_rows(packed: torch.nn.utils.rnn.PackedSequence, positions: torch.Tensor) -> torch.Tensor:
    """Rows of ``packed.data`` holding time step ``positions[s, t]`` of sequence s.

    Packed rows are time-major: the rows of time step p start at
    ``cumsum(batch_sizes)[p] - batch_sizes[p]`` and sequence s sits at its
    rank in the length-sorted order (``unsorted_indices[s]``).

    Args:
        packed: a ``PackedSequence`` packed with ``enforce_sorted=False``.
        positions: (S, ...) long time steps, each below its sequence's length
            (a step beyond it would name another sequence's row).
    Returns:
        (S, ...) long row indices into ``packed.data``, on its device.
    """
    batch_sizes = packed.batch_sizes  # (P,) on CPU, non-increasing
    device = packed.data.device
    offsets = (torch.cumsum(batch_sizes, 0) - batch_sizes).to(device)  # (P,)
    rank = packed.unsorted_indices.to(device).view(-1, *([1] * (positions.dim() - 1)))  # (S, 1, ...)
    return offsets[positions.to(device)] + rank


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
