"""Training and validation batches of the dense LSTM language model.

* **Sentence examples.** Each sentence is one independent sequence; the LM
  state starts from zero for every sentence. For a sentence ``w1 .. wn``

  - forward:  input ``<s> w1 .. wn``, targets ``w1 .. wn </s>``;
  - backward: the words are reversed first: input ``<s> wn .. w1``,
    targets ``wn .. w1 </s>``.

  The model always reads left to right; ``direction="backward"`` is purely a
  data-side reversal, the same as :func:`spacy_ldnet.lm.model.reverse_padded`
  applied to the word ids before ``<s>`` is prepended. At inference the
  embedder feeds ``<s> w1 .. wn`` to the forward LM and takes its outputs at
  positions ``1..n``. For the backward LM it either feeds ``<s> wn .. w1`` and
  reverses the outputs at positions ``1..n``, or, equivalently, feeds
  ``w1 .. wn <s>`` (boundary token *appended*) to
  :meth:`~spacy_ldnet.lm.model.DenseLSTMEncoder.encode_text_order` and takes
  positions ``0..n-1``. ``</s>`` is only ever a target, never an input.
* **Sharding.** Sentence number ``i`` (counting non-empty lines over the
  concatenated training files, from 0) belongs to rank ``i % world_size``.
* **Determinism.** Batches depend only on ``(seed, epoch, rank, world_size,
  files, vocab, batch settings)``; the stream position is a small JSON-able
  dict (:meth:`BatchStream.state_dict`) from which it restarts exactly.
"""
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import numpy
import torch

from ..data import LMDataError, PathLike, Vocab, iter_sentences


def make_example(ids: Sequence[int], vocab: Vocab, direction: str = "forward") -> Tuple[List[int], List[int]]:
    """Turn one encoded sentence into ``(inputs, targets)`` of equal length ``len(ids) + 1``.

    forward:  ``<s> w1..wn`` -> ``w1..wn </s>``; backward: the same on the
    reversed sentence, ``<s> wn..w1`` -> ``wn..w1 </s>``.
    """
    if direction == "backward":
        ids = list(reversed(ids))
    elif direction != "forward":
        raise ValueError(f"direction must be 'forward' or 'backward', got {direction!r}")
    else:
        ids = list(ids)
    return [vocab.bos_id] + ids, ids + [vocab.eos_id]


@dataclass
class Batch:
    """One padded batch.

    token_ids, targets: (B, T) int64, padded with ``<pad>`` (0);
    lengths: (B,) int64, true lengths (sentence length + 1);
    n_tokens: ``lengths.sum()`` (= number of prediction targets).
    """

    token_ids: torch.Tensor
    targets: torch.Tensor
    lengths: torch.Tensor
    n_tokens: int

    def to(self, device: Union[str, torch.device]) -> "Batch":
        return Batch(
            self.token_ids.to(device, non_blocking=True),
            self.targets.to(device, non_blocking=True),
            self.lengths.to(device, non_blocking=True),
            self.n_tokens,
        )


def collate(examples: Sequence[Tuple[List[int], List[int]]], pad_id: int = 0) -> Batch:
    """Pad ``(inputs, targets)`` pairs into a :class:`Batch` (right padding)."""
    B = len(examples)
    T = max(len(x) for x, _ in examples)
    ids = numpy.full((B, T), pad_id, dtype=numpy.int64)
    tgt = numpy.full((B, T), pad_id, dtype=numpy.int64)
    lengths = numpy.empty(B, dtype=numpy.int64)
    for i, (x, y) in enumerate(examples):
        ids[i, : len(x)] = x
        tgt[i, : len(y)] = y
        lengths[i] = len(x)
    return Batch(torch.from_numpy(ids), torch.from_numpy(tgt), torch.from_numpy(lengths), int(lengths.sum()))


class BatchStream:
    """An endless, deterministic, sharded and resumable stream of training batches.

    The corpus is read sequentially (file after file); sentence ``i`` goes to
    rank ``i % world_size``. Each rank collects ``buffer_size`` of its
    sentences, shuffles them with a generator seeded by ``(seed, epoch, rank,
    buffer index)``, sorts them by length in chunks of ``sort_chunks`` batches
    (bucketing: little padding), cuts batches of ``batch_size`` sentences and
    shuffles the batch order. After the last file the next epoch starts.

    Sentences longer than ``max_len`` tokens are cut into pieces of at most
    ``max_len`` tokens (each piece is its own example, so nothing is dropped).

    The position (epoch, buffer index, batch index inside the buffer) is given
    by :meth:`state_dict`; :meth:`load_state_dict` restarts there by re-reading
    (not re-shuffling) the skipped buffers, so resuming costs one sequential
    read of the data before the position, with no randomness consumed.
    """

    def __init__(
        self,
        paths: Sequence[PathLike],
        vocab: Vocab,
        *,
        batch_size: int = 32,
        direction: str = "forward",
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        buffer_size: int = 20000,
        sort_chunks: int = 50,
        max_len: int = 200,
        shuffle: bool = True,
    ):
        if not paths:
            raise LMDataError("No training files given")
        for p in paths:
            if not Path(p).is_file():
                raise LMDataError(f"Corpus file not found: {p}. Fix: pass existing training files.")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        if direction not in ("forward", "backward"):
            raise ValueError(f"direction must be 'forward' or 'backward', got {direction!r}")
        self.paths = [str(p) for p in paths]
        self.vocab = vocab
        self.batch_size = int(batch_size)
        self.direction = direction
        self.rank, self.world_size = int(rank), int(world_size)
        self.seed = int(seed)
        self.buffer_size = max(int(buffer_size), self.batch_size)
        self.sort_chunks = max(1, int(sort_chunks))
        self.max_len = int(max_len)
        self.shuffle = shuffle
        # position of the next batch to yield
        self.epoch = 0
        self.buffer_index = 0
        self.batch_index = 0

    # -- position ---------------------------------------------------------
    def state_dict(self) -> dict:
        """Position of the next batch (JSON-serialisable), plus the settings it depends on."""
        return {
            "epoch": self.epoch,
            "buffer_index": self.buffer_index,
            "batch_index": self.batch_index,
            "rank": self.rank,
            "world_size": self.world_size,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "buffer_size": self.buffer_size,
            "direction": self.direction,
            "files": [Path(p).name for p in self.paths],
        }

    def load_state_dict(self, state: dict) -> None:
        """Restart at a saved position.

        Raises:
            LMDataError: the state was saved with different data settings, so
                the position would point at different sentences.
        """
        mine = self.state_dict()
        for key in ("rank", "world_size", "seed", "batch_size", "buffer_size", "direction", "files"):
            if key in state and state[key] != mine[key]:
                raise LMDataError(
                    f"Cannot resume the data stream: it was saved with {key}={state[key]!r} "
                    f"but this run has {key}={mine[key]!r}. Use the same settings, "
                    f"or start fresh (--no-resume)."
                )
        self.epoch = int(state["epoch"])
        self.buffer_index = int(state["buffer_index"])
        self.batch_index = int(state["batch_index"])

    # -- iteration --------------------------------------------------------
    def _my_sentences(self) -> Iterator[List[str]]:
        for i, toks in enumerate(iter_sentences(self.paths)):
            if i % self.world_size == self.rank:
                yield toks

    def _pieces(self, toks: List[str]) -> Iterator[List[str]]:
        for start in range(0, len(toks), self.max_len):
            yield toks[start : start + self.max_len]

    def _buffers(self) -> Iterator[List[List[str]]]:
        buf: List[List[str]] = []
        for toks in self._my_sentences():
            buf.append(toks)
            if len(buf) == self.buffer_size:
                yield buf
                buf = []
        if buf:
            yield buf

    def _batches_of_buffer(self, buf: List[List[str]], epoch: int, index: int) -> List[Batch]:
        examples = [
            make_example(self.vocab.encode(piece), self.vocab, self.direction)
            for toks in buf
            for piece in self._pieces(toks)
        ]
        order = numpy.arange(len(examples))
        rng = numpy.random.default_rng([self.seed, epoch, self.rank, index])
        if self.shuffle:
            rng.shuffle(order)
        chunk = self.batch_size * self.sort_chunks
        batches: List[List[int]] = []
        for c in range(0, len(order), chunk):
            part = sorted(order[c : c + chunk].tolist(), key=lambda j: len(examples[j][0]))
            batches.extend(part[b : b + self.batch_size] for b in range(0, len(part), self.batch_size))
        if self.shuffle:
            perm = rng.permutation(len(batches))
            batches = [batches[k] for k in perm]
        return [collate([examples[j] for j in b], self.vocab.pad_id) for b in batches]

    def __iter__(self) -> Iterator[Batch]:
        """Yield batches forever (epoch after epoch), starting at the current position.

        The position advances as batches are yielded, so ``state_dict()``
        taken after consuming batch ``k`` resumes at batch ``k + 1``.
        """
        while True:
            got_any = False
            for index, buf in enumerate(self._buffers()):
                got_any = True
                if index < self.buffer_index:
                    continue  # skipping to the saved position: read, don't shuffle
                batches = self._batches_of_buffer(buf, self.epoch, index)
                while self.batch_index < len(batches):
                    b = batches[self.batch_index]
                    self.batch_index += 1
                    yield b
                self.buffer_index += 1
                self.batch_index = 0
            if not got_any:
                raise LMDataError(
                    f"Rank {self.rank} of {self.world_size} has no sentences in {self.paths} "
                    f"(the corpus has fewer non-empty lines than processes)"
                )
            self.epoch += 1
            self.buffer_index = 0
            self.batch_index = 0


def iter_eval_batches(
    path: PathLike,
    vocab: Vocab,
    *,
    direction: str = "forward",
    batch_size: int = 64,
    max_tokens: Optional[int] = None,
    max_len: int = 200,
    sort_buffer: int = 4096,
) -> Iterator[Batch]:
    """Deterministic validation batches: the first sentences of ``path``.

    Reads sentences in file order until ``max_tokens`` prediction targets
    (sentence tokens + 1 for ``</s>``) are collected (``None``: the whole
    file), sorting by length within groups of ``sort_buffer`` sentences.
    """
    total = 0
    group: List[Tuple[List[int], List[int]]] = []

    def flush(group):
        group.sort(key=lambda e: len(e[0]))
        for b in range(0, len(group), batch_size):
            yield collate(group[b : b + batch_size], vocab.pad_id)

    for toks in iter_sentences([path]):
        for start in range(0, len(toks), max_len):
            piece = toks[start : start + max_len]
            group.append(make_example(vocab.encode(piece), vocab, direction))
            total += len(piece) + 1
        if len(group) >= sort_buffer:
            yield from flush(group)
            group = []
        if max_tokens is not None and total >= max_tokens:
            break
    if group:
        yield from flush(group)
