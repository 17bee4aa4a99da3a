"""Gold BILUO tags of training examples, aligned to the predicted tokens.

Entities come from ``Example.get_aligned_ner``; spans (``spans_key`` mode,
e.g. CoNLL-2000 chunks) from :func:`aligned_span_tags`. :func:`gold_tag_ids`
maps them onto the cut of the batch, one list of tag ids per sequence.
"""
from typing import List, Optional, Sequence

import numpy
from spacy.training import Example

from ..sequences import Sequences


def gold_tags(eg: Example, spans_key: Optional[str]) -> List[Optional[str]]:
    """Gold BILUO tags over ``eg.predicted``'s tokens (entities, or
    ``reference.spans[spans_key]``); None or ``"-"`` where unknown."""
    if spans_key is None:
        return eg.get_aligned_ner()
    return aligned_span_tags(eg, spans_key)


def gold_tag_ids(
    examples: Sequence[Example], seqs: Sequences, tag_names: Sequence[str], spans_key: Optional[str]
) -> List[Optional[List[int]]]:
    """Gold tag ids (indices into ``tag_names``) per sequence of ``seqs``, the
    cut of the examples' predicted docs; None for a sequence with a tag that
    is unknown or not in ``tag_names`` (its annotation is incomplete)."""
    tag_index = {name: i for i, name in enumerate(tag_names)}
    gold = [gold_tags(eg, spans_key) for eg in examples]
    out: List[Optional[List[int]]] = []
    for i, s, e in seqs.spans:
        tags = gold[i][s:e]
        known = all(t is not None and t in tag_index for t in tags)
        out.append([tag_index[t] for t in tags] if known else None)
    return out


def aligned_span_tags(eg: Example, spans_key: str) -> List[Optional[str]]:
    """Gold BILUO tags over ``eg.predicted`` from ``eg.reference.spans[spans_key]``.

    The spans are aligned to the predicted tokens
    (``Example.get_aligned_spans_y2x``, no overlap). A predicted token is
    ``"O"`` only when it aligns to reference tokens that are all outside every
    reference span; tokens of spans that do not align, or of spans that
    overlap, are None (missing), so the loss leaves their sequence out, as
    ``Example.get_aligned_ner`` does for entities. A reference without the
    group ``spans_key`` is unannotated: all None.
    """
    x, y = eg.predicted, eg.reference
    if spans_key not in y.spans:
        return [None] * len(x)
    y_spans = list(y.spans[spans_key])
    tags: List[Optional[str]] = [None] * len(x)
    for span in eg.get_aligned_spans_y2x(y_spans, allow_overlap=False):
        if any(tags[i] is not None for i in range(span.start, span.end)):
            continue  # cannot be encoded in one BILUO sequence
        label = span.label_
        if len(span) == 1:
            tags[span.start] = f"U-{label}"
        else:
            tags[span.start] = f"B-{label}"
            for i in range(span.start + 1, span.end - 1):
                tags[i] = f"I-{label}"
            tags[span.end - 1] = f"L-{label}"
    inside = numpy.zeros((len(y),), dtype=bool)
    for span in y_spans:
        inside[span.start : span.end] = True
    x2y = eg.alignment.x2y
    for i in range(len(x)):
        if tags[i] is None:
            ys = numpy.asarray(x2y[i], dtype="int64")
            if len(ys) and not inside[ys].any():
                tags[i] = "O"
    return tags
