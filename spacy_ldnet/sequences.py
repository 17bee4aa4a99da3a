"""How a spaCy ``Doc`` is cut into the token sequences the LSTMs and the CRF read.

LD-Net (like every BiLSTM-CRF tagger) is trained on sentences. A user's doc may
be a sentence, a document with sentence boundaries, or a 20,000-token text with
none. Every layer of ``ldnet_ner`` (character BiLSTM, word BiLSTM, CRF) uses
this one function, so they always agree on the cut.

This module imports nothing heavy; it only reads ``Doc`` attributes.
"""
from typing import List, Tuple

#: Token texts after which a long unsentenced doc is preferably cut.
SENTENCE_FINAL = frozenset({".", "!", "?", "…", "。", "！", "？"})


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
