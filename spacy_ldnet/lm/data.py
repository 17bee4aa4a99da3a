"""Streaming data pipeline for language-model pretraining.

Input format (see ``/work/shared/data/lm/SOURCE.md``): UTF-8 text, plain or
gzip-compressed (detected from the file's magic bytes, not its name), **one
tokenized sentence per line**, tokens separated by single spaces, and empty
lines separating documents. Files are always read line by line; the corpus is
never held in memory.

Conventions shared with the model (:mod:`spacy_ldnet.lm.model`) and the NER
embedder (:mod:`spacy_ldnet.embed`):

* **Special tokens** occupy the first rows of every vocabulary, in this order:
  ``<pad>`` (0), ``<unk>`` (1), ``<s>`` (2), ``</s>`` (3).
* **Lower-casing.** By default tokens are lower-cased before lookup
  (:attr:`Vocab.lowercase`; the pretraining command stores it as
  ``extra["lowercase"]`` in the checkpoint). The LM text is cased but GloVe 6B
  is lower-cased; lower-casing lets every LM vocabulary row start from (or stay
  frozen at) its GloVe vector, as ELMo-C does with its fixed input embeddings,
  and lets the continuous output layer find a GloVe target for almost every
  token. Case information reaches the NER tagger through its own character and
  word features, not through the LM.
* **Sentence examples.** Each sentence is one independent sequence; the LM
  state starts from zero for every sentence. For a sentence ``w1 .. wn``

  - forward:  input ``<s> w1 .. wn``, targets ``w1 .. wn </s>``;
  - backward: the words are reversed first: input ``<s> wn .. w1``,
    targets ``wn .. w1 </s>``.

  The model always reads left to right; ``direction="backward"`` is purely a
  data-side reversal, the same as
  :func:`spacy_ldnet.lm.model.reverse_padded` applied to the word ids before
  ``<s>`` is prepended (tested). At inference the embedder feeds
  ``<s> w1 .. wn`` to the forward LM and takes its outputs at positions
  ``1..n`` (the state after reading ``wi`` is the left-context feature of
  ``wi``). For the backward LM it either feeds ``<s> wn .. w1`` and reverses
  the outputs at positions ``1..n``, or, equivalently, feeds ``w1 .. wn <s>``
  (boundary token *appended*) to
  :meth:`~spacy_ldnet.lm.model.DenseLSTMEncoder.encode_text_order`, which
  reverses, encodes and reverses back, and takes positions ``0..n-1``.
  ``<s>`` is stored as ``extra["bos"]`` in checkpoints written by the
  pretraining command. ``</s>`` is only ever a target, never an input.
* **Sharding.** Sentence number ``i`` (counting non-empty lines over the
  concatenated training files, from 0) belongs to rank ``i % world_size``.
* **Determinism.** Batches depend only on ``(seed, epoch, rank, world_size,
  files, vocab, batch settings)``; the stream position is a small dict
  (:meth:`BatchStream.state_dict`) from which it can be restarted exactly.
"""
import gzip
import io
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy
import torch

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"
SPECIAL_TOKENS: Tuple[str, ...] = (PAD, UNK, BOS, EOS)
PathLike = Union[str, Path]


class LMDataError(ValueError):
    """A corpus or vocabulary file is missing, empty or malformed."""


# --------------------------------------------------------------------------- reading


def open_text(path: PathLike) -> io.TextIOBase:
    """Open ``path`` for reading text, gunzipping if it starts with the gzip magic.

    Undecodable bytes are replaced with U+FFFD rather than aborting a long run.

    Raises:
        LMDataError: the file does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise LMDataError(f"Corpus file not found: {path}")
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, "rt", encoding="utf-8", errors="replace")


def split_tokens(line: str) -> List[str]:
    """Split one corpus line on ASCII spaces (only), dropping empty strings.

    Other Unicode whitespace (NBSP, thin space...) stays inside tokens, as the
    tokenizer that produced the corpus left it there.
    """
    return [t for t in line.rstrip("\r\n").split(" ") if t]


def iter_sentences(paths: Sequence[PathLike]) -> Iterator[List[str]]:
    """Yield the token lists of all non-empty lines of ``paths``, in order.

    Empty (or whitespace-only) lines are document separators and are skipped.
    """
    for path in paths:
        with open_text(path) as f:
            for line in f:
                toks = split_tokens(line)
                if toks:
                    yield toks


def count_tokens(
    paths: Sequence[PathLike], *, lowercase: bool = True, max_sentences: Optional[int] = None
) -> Tuple[Counter, int, int]:
    """Count token frequencies with one streaming pass.

    Returns: ``(counts, n_sentences, n_tokens)``.
    """
    counts: Counter = Counter()
    n_sent = n_tok = 0
    for toks in iter_sentences(paths):
        if lowercase:
            toks = [t.lower() for t in toks]
        counts.update(toks)
        n_sent += 1
        n_tok += len(toks)
        if max_sentences is not None and n_sent >= max_sentences:
            break
    return counts, n_sent, n_tok


def targets_in_buffers(
    paths: Sequence[PathLike], n_buffers: int, *, buffer_size: int = 20000, max_len: int = 200
) -> int:
    """Prediction targets in the first ``n_buffers`` :class:`BatchStream` buffers (single process).

    The inverse of :func:`buffers_covering`: where in the corpus a run that
    started at ``--start-buffer n_buffers`` began, counted in targets.
    """
    total = n_sent = buffers = 0
    if n_buffers <= 0:
        return 0
    for toks in iter_sentences(paths):
        total += len(toks) + -(-len(toks) // max_len)
        n_sent += 1
        if n_sent == buffer_size:
            buffers += 1
            n_sent = 0
            if buffers == n_buffers:
                return total
    return total


def buffers_covering(
    paths: Sequence[PathLike], n_targets: int, *, buffer_size: int = 20000, max_len: int = 200
) -> int:
    """How many whole :class:`BatchStream` buffers (single process) hold ``n_targets``.

    A run that has trained on ``n_targets`` prediction targets (``tokens_seen``
    in its logs; one per token plus the end-of-sentence target) has read at
    most this many buffers of epoch 0, so a continuation that starts at this
    buffer index (``--start-buffer``) sees only text that run has not seen.
    Streams the corpus up to that point (about a minute per 10M tokens).

    Raises:
        LMDataError: the corpus holds fewer targets than ``n_targets`` (the run
            went past its first epoch, so there is no unseen text left to start at).
    """
    total = n_sent = buffers = 0
    for toks in iter_sentences(paths):
        total += len(toks) + -(-len(toks) // max_len)  # each piece of <= max_len tokens adds one target
        n_sent += 1
        if n_sent == buffer_size:
            buffers += 1
            n_sent = 0
            if total >= n_targets:
                return buffers
    if n_sent and total >= n_targets:
        return buffers + 1
    raise LMDataError(
        f"The corpus {list(map(str, paths))} holds {total} targets, fewer than {n_targets}: a run that "
        f"saw that many has started a second epoch. Fix: continue without --start-buffer."
    )


# --------------------------------------------------------------------------- vocabulary


class Vocab:
    """Token <-> id mapping; the four :data:`SPECIAL_TOKENS` come first.

    lowercase: whether :meth:`encode` lower-cases tokens before lookup.
    """

    def __init__(self, tokens: Sequence[str], *, lowercase: bool = True):
        tokens = list(tokens)
        if tuple(tokens[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise LMDataError(
                f"A vocabulary must start with the special tokens {list(SPECIAL_TOKENS)}; "
                f"got {tokens[:4]}"
            )
        self.tokens: List[str] = tokens
        self.index: Dict[str, int] = {}
        for i, t in enumerate(tokens):
            if t in self.index:
                raise LMDataError(f"Duplicate vocabulary entry {t!r} (rows {self.index[t]} and {i})")
            self.index[t] = i
        self.lowercase = bool(lowercase)
        self.pad_id, self.unk_id, self.bos_id, self.eos_id = 0, 1, 2, 3

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: str) -> bool:
        return token in self.index

    def encode(self, tokens: Iterable[str]) -> List[int]:
        """Map tokens to ids (lower-casing first if ``self.lowercase``); unknown -> ``<unk>``."""
        get, unk = self.index.get, self.unk_id
        if self.lowercase:
            return [get(t.lower(), unk) for t in tokens]
        return [get(t, unk) for t in tokens]

    @classmethod
    def from_counts(
        cls,
        counts: Counter,
        *,
        max_size: Optional[int] = None,
        min_count: int = 1,
        lowercase: bool = True,
    ) -> "Vocab":
        """Keep tokens with ``count >= min_count``, most frequent first, ties by string.

        max_size: total rows including the 4 special tokens (``None``: no limit).
        """
        words = [w for w, c in counts.items() if c >= min_count and w not in SPECIAL_TOKENS]
        words.sort(key=lambda w: (-counts[w], w))
        if max_size is not None:
            if max_size <= len(SPECIAL_TOKENS):
                raise LMDataError(f"max_size must exceed {len(SPECIAL_TOKENS)}, got {max_size}")
            words = words[: max_size - len(SPECIAL_TOKENS)]
        return cls(list(SPECIAL_TOKENS) + words, lowercase=lowercase)

    def save(self, path: PathLike) -> None:
        """Write one token per line (UTF-8), row order = id order."""
        for t in self.tokens:
            if "\n" in t or "\r" in t:
                raise LMDataError(f"Token {t!r} contains a line break and cannot be saved")
        Path(path).write_text("\n".join(self.tokens) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: PathLike, *, lowercase: bool = True) -> "Vocab":
        """Read a ``vocab.txt`` written by :meth:`save`.

        Raises:
            LMDataError: missing file or missing special tokens.
        """
        path = Path(path)
        if not path.is_file():
            raise LMDataError(f"Vocabulary file not found: {path}")
        text = path.read_text(encoding="utf-8")
        tokens = text.split("\n")
        if tokens and tokens[-1] == "":
            tokens.pop()
        try:
            return cls(tokens, lowercase=lowercase)
        except LMDataError as e:
            raise LMDataError(f"{path}: {e}") from e


def build_vocab(
    paths: Sequence[PathLike],
    *,
    max_size: Optional[int] = None,
    min_count: int = 1,
    lowercase: bool = True,
) -> Tuple[Vocab, dict]:
    """Stream ``paths`` once and build a :class:`Vocab`.

    Returns: ``(vocab, stats)``; stats holds ``n_sentences``, ``n_tokens``,
    ``n_types`` and ``token_coverage`` (fraction of running tokens that are
    in the vocabulary, i.e. not mapped to ``<unk>``).
    """
    counts, n_sent, n_tok = count_tokens(paths, lowercase=lowercase)
    if n_tok == 0:
        raise LMDataError(f"No tokens in {[str(p) for p in paths]}")
    vocab = Vocab.from_counts(counts, max_size=max_size, min_count=min_count, lowercase=lowercase)
    covered = sum(c for w, c in counts.items() if w in vocab.index)
    stats = {
        "n_sentences": n_sent,
        "n_tokens": n_tok,
        "n_types": len(counts),
        "vocab_size": len(vocab),
        "token_coverage": covered / n_tok,
    }
    return vocab, stats


def glove_coverage(vocab: Vocab, glove_words: Sequence[str], counts: Optional[Counter] = None) -> dict:
    """How much of ``vocab`` (and, with ``counts``, of the running text) GloVe covers.

    Returns: dict with ``types_in_glove`` (fraction of non-special vocab rows
    that have a GloVe vector) and, with counts, ``tokens_in_glove`` (fraction
    of running tokens whose lower-cased form has a GloVe vector).
    """
    gset = set(glove_words)
    words = vocab.tokens[len(SPECIAL_TOKENS):]
    out = {"types_in_glove": sum(w in gset for w in words) / max(1, len(words))}
    if counts is not None:
        total = sum(counts.values())
        out["tokens_in_glove"] = sum(c for w, c in counts.items() if w.lower() in gset) / max(1, total)
    return out


# --------------------------------------------------------------------------- examples


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


# --------------------------------------------------------------------------- batch stream


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
                raise LMDataError(f"Corpus file not found: {p}")
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


def write_json(path: PathLike, obj) -> None:
    """Write JSON atomically (tmp file + rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)
