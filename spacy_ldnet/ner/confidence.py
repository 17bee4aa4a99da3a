"""Entity confidence from the CRF's exact marginals (forward-backward).

A linear-chain CRF gives the exact probability that a span carries a label:
the sum of ``p(y | E)`` over every allowed tag path that contains the span's
``B-X I-X .. L-X`` (or ``U-X``) segment (Sutton & McCallum 2012, section 4.1;
the BILUO constraints of :func:`spacy_ldnet.ner.tags.allowed_transitions`
apply, so the sum runs over well-formed paths only). This module turns the
forward-backward tables of :func:`spacy_ldnet.ner.model.posterior` into:

* the probability of every Viterbi span (:func:`predict_docs`), written by the
  ``ldnet_ner`` component to ``doc.spans[scores_key]`` as a SpanGroup with
  ``attrs["scores"]``, the way spaCy's ``spancat`` stores span scores;
* every span whose probability reaches a threshold, overlapping allowed
  (:func:`candidate_queries`), for review queues and active learning;
* per-token tag marginals (:func:`doc_tag_marginals`).

Probabilities are computed in float64 and stored as float32, clipped to
``[TINY, 1]`` (:data:`TINY`, the smallest normal float32) so that every score
lies in (0, 1].
"""
import math
from dataclasses import dataclass
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy
import torch
from spacy.tokens import Doc, Span, SpanGroup
from thinc.api import Model
from thinc.types import Floats3d

from ..sequences import Sequences
from .crf import Posterior, segment_log_probs, tag_marginals
from .model import cut, emission_scores, posterior, viterbi_paths
from .tags import BEGIN, INSIDE, LAST, OUTSIDE, UNIT, split_tag

#: Default ``scores_key``: the SpanGroup of the predicted spans with ``attrs["scores"]``.
SCORES_KEY = "ldnet_ner_scores"
#: Default ``candidates_key``: the SpanGroup of all spans above ``candidates_threshold``.
CANDIDATES_KEY = "ldnet_ner_candidates"
#: The component's confidence settings and their defaults (Viterbi output unchanged).
CONFIDENCE_DEFAULTS = {
    "scores_key": SCORES_KEY,
    "threshold": 0.0,
    "candidates_key": CANDIDATES_KEY,
    "candidates_threshold": None,
    "temperature": 1.0,
}
#: Lowest stored span probability (the smallest normal float32).
TINY = float(numpy.finfo(numpy.float32).tiny)
#: Slack when candidate spans are pre-selected by their tag marginals (rounding).
_SLACK = 1e-9


class TagLayout(NamedTuple):
    """Where each label's BILUO tags sit in the tag inventory.

    ``begin``, ``inside``, ``last``, ``unit``: (n_labels,) int64 tag ids;
    ``prefix``: (K,) one-letter prefix per tag (``"O"``, ``"B"`` ..);
    ``label``: (K,) int64 label index per tag, -1 for ``O``.
    """

    begin: numpy.ndarray
    inside: numpy.ndarray
    last: numpy.ndarray
    unit: numpy.ndarray
    prefix: numpy.ndarray
    label: numpy.ndarray

    @classmethod
    def from_tag_names(cls, tag_names: Sequence[str], labels: Sequence[str]) -> "TagLayout":
        """Raises: ValueError if a label lacks one of its four tags (see
        :func:`spacy_ldnet.ner.tags.split_tag` for malformed tags)."""
        index = {label: i for i, label in enumerate(labels)}
        ids = {p: numpy.full(len(labels), -1, dtype="int64") for p in (BEGIN, INSIDE, LAST, UNIT)}
        prefix = numpy.empty(len(tag_names), dtype="<U1")
        label_of = numpy.full(len(tag_names), -1, dtype="int64")
        for k, tag in enumerate(tag_names):
            p, label = split_tag(tag)
            prefix[k] = p
            if p != OUTSIDE:
                label_of[k] = index[label]
                ids[p][index[label]] = k
        if any((a < 0).any() for a in ids.values()):
            raise ValueError(f"Every label needs B, I, L and U tags; the inventory is {list(tag_names)}.")
        return cls(ids[BEGIN], ids[INSIDE], ids[LAST], ids[UNIT], prefix, label_of)

    def queries(self, rows, starts, ends, labels) -> numpy.ndarray:
        """(N, 6) rows ``(row, s, e, first, inside, last)`` for
        :func:`spacy_ldnet.ner.crf.segment_log_probs`; ``e`` inclusive,
        ``first = U-X`` where ``s == e``, else ``B-X``. Each argument: (N,) ints."""
        rows, starts, ends, labels = (numpy.asarray(a, dtype="int64").reshape(-1) for a in (rows, starts, ends, labels))
        first = numpy.where(starts == ends, self.unit[labels], self.begin[labels])
        last = numpy.where(starts == ends, self.unit[labels], self.last[labels])
        return numpy.stack([rows, starts, ends, first, self.inside[labels], last], axis=1).reshape(-1, 6)


def path_segments(paths: Sequence[Sequence[int]], layout: TagLayout) -> numpy.ndarray:
    """The spans of well-formed BILUO tag paths: (N, 4) int64 rows
    ``(path, start, end, label)``, ``end`` inclusive, in order (vectorised
    over all paths at once).

    Raises: ValueError if a path is not well-formed (a B without its L).
    """
    lengths = numpy.array([len(p) for p in paths], dtype="int64")  # (S,)
    tags = numpy.concatenate([numpy.asarray(p, dtype="int64") for p in paths]) if len(paths) else lengths  # (n,)
    rows = numpy.repeat(numpy.arange(len(paths)), lengths)  # (n,)
    positions = numpy.arange(len(tags)) - numpy.repeat(numpy.cumsum(lengths) - lengths, lengths)  # (n,)
    prefix = layout.prefix[tags]  # (n,)
    opens = numpy.flatnonzero((prefix == BEGIN) | (prefix == UNIT))
    closes = numpy.flatnonzero((prefix == LAST) | (prefix == UNIT))
    if len(opens) != len(closes) or (
        len(opens) and ((closes < opens).any() or (opens[1:] <= closes[:-1]).any() or (rows[opens] != rows[closes]).any())
    ):
        raise ValueError(f"Not a well-formed BILUO path: {[list(layout.prefix[p]) for p in paths]}.")
    return numpy.stack([rows[opens], positions[opens], positions[closes], layout.label[tags[opens]]], axis=1).reshape(-1, 4)


def span_probabilities(post: Posterior, queries: numpy.ndarray) -> numpy.ndarray:
    """(N,) float64 probabilities of the (N, 6) ``queries`` (see
    :meth:`TagLayout.queries`), clipped to ``[TINY, 1]``."""
    if not len(queries):
        return numpy.zeros((0,), dtype="float64")
    log_p = segment_log_probs(post, torch.from_numpy(queries))
    return numpy.clip(numpy.exp(log_p.cpu().numpy().astype("float64")), TINY, 1.0)


def candidate_queries(marginals: numpy.ndarray, layout: TagLayout, threshold: float) -> numpy.ndarray:
    """Queries (as :meth:`TagLayout.queries`) for every span that may reach ``threshold``.

    marginals: (S, T, K) tag marginals (0 at padding). A span's probability is
    at most the marginal of each of its tags, so only spans whose B (or U),
    every I and L marginals reach ``threshold`` are listed; the caller keeps
    those whose span probability does. Exact up to a 1e-9 rounding slack.
    """
    keep = marginals >= threshold - _SLACK  # (S, T, K)
    out = []
    for label in range(len(layout.begin)):
        rows, pos = numpy.nonzero(keep[:, :, layout.unit[label]])
        out.append(layout.queries(rows, pos, pos, numpy.full(len(rows), label)))
        # (S, T + 1): number of positions before t whose I marginal is below the threshold
        gaps = numpy.pad(numpy.cumsum(~keep[:, :, layout.inside[label]], axis=1), ((0, 0), (1, 0)))
        for r in numpy.flatnonzero(keep[:, :, layout.begin[label]].any(axis=1)):
            s = numpy.flatnonzero(keep[r, :, layout.begin[label]])[:, None]  # (n_s, 1)
            e = numpy.flatnonzero(keep[r, :, layout.last[label]])[None, :]  # (1, n_e)
            ok = (s < e) & (gaps[r, e] - gaps[r, numpy.minimum(s + 1, e)] == 0)  # (n_s, n_e)
            si, ei = numpy.nonzero(ok)
            out.append(layout.queries(numpy.full(len(si), r), s[si, 0], e[0, ei], numpy.full(len(si), label)))
    return numpy.concatenate(out) if out else numpy.zeros((0, 6), dtype="int64")


@dataclass
class DocPrediction:
    """What ``LDNetNER.predict`` returns for one doc.

    tag_ids: (n_tokens,) int64 Viterbi tag ids.
    spans: (n, 3) int64 rows ``(start, end, label)`` of the Viterbi spans, token
        offsets with ``end`` exclusive, ``label`` indexing the component's labels.
    scores: (n,) float32 probability of each span, or None when not scored.
    candidates, candidate_scores: every span (overlaps allowed) whose
        probability reaches ``candidates_threshold``, as ``spans``/``scores``,
        or None when that option is off.
    """

    tag_ids: numpy.ndarray
    spans: numpy.ndarray
    scores: Optional[numpy.ndarray] = None
    candidates: Optional[numpy.ndarray] = None
    candidate_scores: Optional[numpy.ndarray] = None


def predict_docs(
    model: Model,
    docs: Sequence[Doc],
    layout: TagLayout,
    *,
    scored: bool = True,
    temperature: float = 1.0,
    candidates_threshold: Optional[float] = None,
) -> List[DocPrediction]:
    """Viterbi spans of every doc and, if ``scored``, their probabilities at
    ``temperature``; with ``candidates_threshold``, also every span whose
    probability reaches it. One cut, one emission pass, one forward-backward.

    Raises: ValueError before ``initialize`` (no head).
    """
    seqs = cut(model, docs)
    preds = [DocPrediction(numpy.zeros((len(doc),), dtype="int64"), numpy.zeros((0, 3), dtype="int64")) for doc in docs]
    if not len(seqs):
        return _to_docs(preds, seqs, None, None, layout, scored, candidates_threshold)
    E, paths, queries = viterbi_queries(model, seqs, layout)
    for (i, s, e), path in zip(seqs.spans, paths):
        preds[i].tag_ids[s:e] = path
    probs = candidates = None
    if scored or candidates_threshold is not None:
        post = posterior(model, E, seqs, temperature)
        probs = span_probabilities(post, queries)
    if candidates_threshold is not None:
        cands = candidate_queries(tag_marginals(post).cpu().numpy(), layout, candidates_threshold)
        cand_probs = span_probabilities(post, cands)
        candidates = (cands[cand_probs >= candidates_threshold], cand_probs[cand_probs >= candidates_threshold])
    return _to_docs(preds, seqs, (queries, probs), candidates, layout, scored, candidates_threshold)


def viterbi_queries(model: Model, seqs: Sequences, layout: TagLayout) -> Tuple[Floats3d, List[List[int]], numpy.ndarray]:
    """Emission scores (S, T, K) of the sequences (S >= 1), their Viterbi
    paths, and the (N, 6) queries (:meth:`TagLayout.queries`) of the paths' spans."""
    E, _ = emission_scores(model, seqs, is_train=False)
    paths = viterbi_paths(model, E, seqs)
    segs = path_segments(paths, layout)
    return E, paths, layout.queries(segs[:, 0], segs[:, 1], segs[:, 2], segs[:, 3])


def _doc_rows(seqs: Sequences, queries: numpy.ndarray, probs, layout: TagLayout):
    """Queries of sequence rows -> doc index (N,), spans (N, 3) ``(start, end
    exclusive, label)`` in doc token offsets and float32 scores, sorted by doc,
    start, end, label."""
    where = numpy.array(seqs.spans, dtype="int64").reshape(-1, 3)  # (S, 3): doc, offset, end
    doc = where[queries[:, 0], 0]
    spans = numpy.stack([where[queries[:, 0], 1] + queries[:, 1], where[queries[:, 0], 1] + queries[:, 2] + 1,
                         layout.label[queries[:, 3]]], axis=1).reshape(-1, 3)
    order = numpy.lexsort((spans[:, 2], spans[:, 1], spans[:, 0], doc))
    scores = None if probs is None else numpy.asarray(probs, dtype="float32")[order]
    return doc[order], spans[order], scores


def _to_docs(preds, seqs, viterbi, candidates, layout, scored: bool, candidates_threshold) -> List[DocPrediction]:
    """Fill each doc's :class:`DocPrediction` from the batch's ``(queries, probabilities)``."""
    empty = (numpy.zeros((0, 6), dtype="int64"), numpy.zeros((0,), dtype="float64"))
    for field, pair in (("spans", viterbi), ("candidates", candidates)):
        if field == "candidates" and candidates_threshold is None:
            continue
        doc, spans, scores = _doc_rows(seqs, *(pair or empty), layout)
        bounds = numpy.searchsorted(doc, numpy.arange(len(preds) + 1))
        for d, pred in enumerate(preds):
            setattr(pred, field, spans[bounds[d] : bounds[d + 1]])
            if field == "candidates":
                pred.candidate_scores = scores[bounds[d] : bounds[d + 1]]
            elif scored:
                pred.scores = scores[bounds[d] : bounds[d + 1]]
    return preds


def scored_group(doc: Doc, name: str, spans: numpy.ndarray, scores: numpy.ndarray, labels: Sequence[str]) -> SpanGroup:
    """A SpanGroup of the ``(start, end, label)`` rows with ``attrs["scores"]``
    the (n,) float32 ``scores``, in the same order (as spaCy's ``spancat``)."""
    group = SpanGroup(doc, name=name, spans=[Span(doc, int(s), int(e), label=labels[int(lab)]) for s, e, lab in spans])
    group.attrs["scores"] = numpy.asarray(scores, dtype="float32")
    return group


def doc_tag_marginals(model: Model, docs: Sequence[Doc], temperature: float = 1.0) -> List[numpy.ndarray]:
    """Per doc, the (n_tokens, K) float64 tag marginals ``p(y_t = k)`` (rows sum
    to 1; columns in the component's ``tag_names`` order), each token read in
    its sequence of the cut. Raises: ValueError before ``initialize``."""
    out = [numpy.zeros((len(doc), model.get_dim("nO")), dtype="float64") for doc in docs]
    seqs = cut(model, docs)
    if not len(seqs):
        return out
    E, _ = emission_scores(model, seqs, is_train=False)
    marginals = tag_marginals(posterior(model, E, seqs, temperature)).cpu().numpy()  # (S, T, K)
    for row, (i, s, e) in enumerate(seqs.spans):
        out[i][s:e] = marginals[row, : e - s]
    return out


def check_settings(spans_key: Optional[str], **confidence) -> Dict[str, Any]:
    """The component's span-group keys and confidence settings
    (:data:`CONFIDENCE_DEFAULTS` fills those not given), each checked with a
    message naming the setting, its value and the fix.

    Returns: every confidence setting. Raises: ValueError (an unknown setting too).
    """
    where = "in [components.ldnet_ner]"
    unknown = sorted(set(confidence) - set(CONFIDENCE_DEFAULTS))
    if unknown:
        raise ValueError(f"ldnet_ner has no setting {unknown}. Fix: use {sorted(CONFIDENCE_DEFAULTS)} {where}.")
    settings = {**CONFIDENCE_DEFAULTS, **confidence}
    scores_key, threshold, temperature = settings["scores_key"], settings["threshold"], settings["temperature"]
    candidates_key, candidates_threshold = settings["candidates_key"], settings["candidates_threshold"]
    if spans_key is not None and (not isinstance(spans_key, str) or not spans_key):
        raise ValueError(
            f"ldnet_ner spans_key must be a non-empty string or null, got {spans_key!r}. "
            f'Fix: e.g. spans_key = "chunks", or null to write doc.ents.'
        )
    for name, key in (("scores_key", scores_key), ("candidates_key", candidates_key)):
        if key is not None and (not isinstance(key, str) or not key):
            raise ValueError(f"ldnet_ner {name} must be a non-empty string or null, got {key!r}. Fix: set {name} {where}.")
    if candidates_key is not None and candidates_key in (spans_key, scores_key):
        raise ValueError(
            f"ldnet_ner candidates_key {candidates_key!r} is also its spans_key or scores_key; candidates "
            f"overlap, so they need their own group. Fix: give candidates_key another name {where}."
        )
    if not _is_number(threshold) or not 0.0 <= threshold <= 1.0:
        raise ValueError(f"ldnet_ner threshold must be a probability in [0, 1], got {threshold!r}. Fix: e.g. threshold = 0.5 {where} (0.0 keeps every entity).")
    if candidates_threshold is not None and (not _is_number(candidates_threshold) or not 0.0 < candidates_threshold <= 1.0):
        raise ValueError(
            f"ldnet_ner candidates_threshold must be in (0, 1] or null, got {candidates_threshold!r}. "
            f"Fix: e.g. candidates_threshold = 0.1 {where}, or null to list no candidates."
        )
    if candidates_threshold is not None and candidates_key is None:
        raise ValueError(f"ldnet_ner has candidates_threshold = {candidates_threshold} but candidates_key = null. Fix: set candidates_key {where}.")
    if not _is_number(temperature) or not 0.0 < temperature < math.inf:
        raise ValueError(f"ldnet_ner temperature must be a finite number above 0, got {temperature!r}. Fix: set temperature = 1.0 {where}, or fit it with spacy-ldnet calibrate.")
    return settings


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)
