"""How a batch of spaCy docs is cut into the token sequences the LSTMs and the CRF read.

LD-Net (Liu et al., EMNLP 2018, section 4.1), like every BiLSTM-CRF tagger,
reads sentences. A user's doc may be a sentence, a document with sentence
boundaries, or a 20,000-token text with none. :func:`sequence_spans` cuts one
doc; :meth:`Sequences.from_docs` cuts a batch, once per ``predict`` or
``update``, and every layer of ``ldnet_ner`` (word and character features, LM
embedder, word BiLSTM, CRF) reads that one :class:`Sequences` object, so they
always agree on the cut.

This module imports nothing heavy (no numpy, torch, spaCy or thinc): it reads
``Doc`` attributes, and pads with the caller's thinc ``ops``.
"""
from dataclasses import dataclass
from typing import Any, List, Sequence, Tuple

#: Token texts after which a long unsentenced doc is preferably cut.
SENTENCE_FINAL = frozenset({".", "!", "?", "…", "。", "！", "？"})

#: ``attrs`` key of a thinc layer that reads a :class:`Sequences` batch and
#: returns its padded (S, T, nO) features, instead of ``List[Doc] -> List[Floats2d]``.
READS_SEQUENCES = "reads_sequences"


def sequence_spans(doc, max_length: int) -> List[Tuple[int, int]]:
    """Split ``doc`` into contiguous token ranges ``[(start, end), ...]``.

    - If the doc has sentence boundaries (``doc.has_annotation("SENT_START")``),
      each sentence is a sequence.
    - Any sequence longer than ``max_length`` tokens is cut further, after the
      last sentence-final punctuation token (``.``, ``!``, ``?``) inside the
      window when there is one, else hard at ``max_length``.

    The ranges cover every token exactly once, in order; an empty doc gives [].

    Raises:
        ValueError: ``max_length < 1``.
    """
    if max_length < 1:
        raise ValueError(f"max_length must be >= 1, got {max_length}")
    n = len(doc)
    if n == 0:
        return []
    if doc.has_annotation("SENT_START"):
        coarse = [(s.start, s.end) for s in doc.sents]
    else:
        coarse = [(0, n)]
    spans: List[Tuple[int, int]] = []
    for start, end in coarse:
        while end - start > max_length:
            cut = start + max_length
            for i in range(start + max_length - 1, start, -1):
                if doc[i].text in SENTENCE_FINAL:
                    cut = i + 1
                    break
            spans.append((start, cut))
            start = cut
        spans.append((start, end))
    return spans


@dataclass(frozen=True)
class Sequences:
    """The token sequences of a batch of docs: the cut every layer reads.

    Shapes: S sequences (``len(self)``), T = the longest one's length
    (``self.padded_length``, 0 when S = 0), D any feature width. A padded
    array is (S, T, D) with sequence s in row s, its tokens at positions
    ``0 .. lengths[s] - 1`` and zeros after.

    Attributes:
        docs: the batch, in order.
        spans: ``spans[s] = (doc_index, start, end)``: sequence s is tokens
            ``start .. end - 1`` of ``docs[doc_index]``. In doc order, they
            cover every token of every doc exactly once (see :func:`sequence_spans`).
        max_length: the longest sequence allowed, in tokens.
    """

    docs: Tuple[Any, ...]
    spans: Tuple[Tuple[int, int, int], ...]
    max_length: int

    @classmethod
    def from_docs(cls, docs: Sequence[Any], max_length: int) -> "Sequences":
        """Cut every doc of the batch with :func:`sequence_spans`.

        Raises:
            ValueError: ``max_length < 1`` (the message names the setting).
        """
        if max_length < 1:
            raise ValueError(
                f"max_sequence_length must be >= 1, got {max_length}. Fix: set max_sequence_length "
                f"in [components.ldnet_ner.model] to a positive number of tokens (256 by default)."
            )
        docs = tuple(docs)
        spans = tuple((i, s, e) for i, doc in enumerate(docs) for s, e in sequence_spans(doc, max_length))
        return cls(docs, spans, int(max_length))

    def __len__(self) -> int:
        return len(self.spans)

    @property
    def lengths(self) -> List[int]:
        """(S,) tokens per sequence, each >= 1."""
        return [e - s for _, s, e in self.spans]

    @property
    def padded_length(self) -> int:
        """T, the length of the longest sequence (0 for an empty batch)."""
        return max(self.lengths, default=0)

    def split(self, doc_arrays: Sequence[Any]) -> List[Any]:
        """Per-doc (n_tokens, ...) arrays -> per-sequence (length, ...) arrays (views)."""
        return [doc_arrays[i][s:e] for i, s, e in self.spans]

    def pad(self, doc_arrays: Sequence[Any], ops) -> Any:
        """Per-doc (n_tokens, D) arrays -> one (S, T, D) array (``ops.pad``).

        Raises: ValueError on an empty batch (S = 0): there is nothing to pad.
        """
        if not self.spans:
            raise ValueError("An empty batch of sequences (no tokens) cannot be padded.")
        return ops.pad(self.split(doc_arrays))

    def unpad(self, padded: Any, ops) -> List[Any]:
        """One (S, T, D) array -> per-doc (n_tokens, D) arrays (the inverse of :meth:`pad`).

        A doc with no tokens gets a (0, D) array.
        """
        width = padded.shape[2]
        parts: List[List[Any]] = [[] for _ in self.docs]
        for (i, _, _), rows in zip(self.spans, ops.unpad(padded, self.lengths)):
            parts[i].append(rows)
        return [ops.xp.concatenate(p, axis=0) if p else ops.alloc2f(0, width) for p in parts]
