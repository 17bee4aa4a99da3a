"""Corpus text and vocabulary of the dense LSTM language model.

Input format: UTF-8 text, plain or gzip-compressed (detected from the file's
magic bytes, not its name), **one tokenized sentence per line**, tokens
separated by single spaces, and empty lines separating documents. Files are
always read line by line; a corpus is never held in memory.

Conventions shared with the model (:mod:`spacy_ldnet.lm.model`), the training
batches (:mod:`spacy_ldnet.lm.training.batches`) and the NER embedder
(:mod:`spacy_ldnet.embed`):

* **Special tokens** occupy the first rows of every vocabulary, in this order:
  ``<pad>`` (0), ``<unk>`` (1), ``<s>`` (2), ``</s>`` (3).
* **Lower-casing.** By default tokens are lower-cased before lookup
  (:attr:`Vocab.lowercase`; the pretraining command stores it as
  ``extra["lowercase"]`` in the checkpoint). GloVe 6B is lower-cased;
  lower-casing lets every LM vocabulary row start from (or stay frozen at) its
  GloVe vector, as ELMo-C (Li et al. 2019, section 3) does with its fixed
  input embeddings, and lets the continuous output layer find a GloVe target
  for almost every token. Case information reaches the NER tagger through its
  own character and word features, not through the LM.
* **Corpus positions** (:func:`buffers_covering`, :func:`targets_in_buffers`)
  count prediction targets: one per token plus one end-of-sentence target per
  piece of at most ``max_len`` tokens, in buffers of ``buffer_size``
  sentences, as :class:`~spacy_ldnet.lm.training.batches.BatchStream` reads
  them in one process.
"""
import gzip
import io
from collections import Counter
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

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
        LMDataError: the path does not exist or is not a file.
    """
    path = Path(path)
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "not found"
        raise LMDataError(
            f"Corpus file {what}: {path}. Fix: pass a text file with one tokenized sentence per line "
            f"(plain or gzip)."
        )
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
                f"got {tokens[:4]}. Fix: use a vocab.txt written by Vocab.save or pretrain-lm."
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
            raise LMDataError(
                f"Vocabulary file not found: {path}. Fix: pass the vocab.txt of a pretraining run or "
                f"exported LM (one token per line)."
            )
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise LMDataError(f"{path} is not UTF-8 text ({e}). Fix: pass a vocab.txt (one token per line).") from e
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
        raise LMDataError(
            f"No tokens in {[str(p) for p in paths]}: every line is empty. Fix: pass text with one "
            f"tokenized sentence per line."
        )
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
