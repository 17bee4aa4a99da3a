"""Annotated docs as output records (``--format jsonl``) or DocBin docs (``--format spacy``).

JSONL record: the input record (``{"text": ...}`` for plain text) with

- ``"entities"``: ``[{"start", "end", "label"}]`` from ``doc.ents``, character
  offsets into the text (end exclusive), when a component of the pipeline
  writes ``doc.ents``;
- ``"spans"``: ``{key: [{"start", "end", "label"}]}`` for each group in
  ``doc.spans`` (e.g. ``ldnet_ner`` with ``spans_key = "chunks"``); when the
  group's ``attrs["scores"]`` holds one score per span (as spaCy's
  ``spancat`` writes), each span also gets ``"score"``.

Fields of the input record with these names are replaced.
"""
from typing import Any, Dict, List

import srsly
from spacy.language import Language
from spacy.tokens import Doc, DocBin, SpanGroup

#: ``doc.user_data`` key of the input record's other fields in ``--format spacy``.
FIELDS_KEY = "fields"


def writes_ents(nlp: Language) -> bool:
    """Whether a component of ``nlp`` writes ``doc.ents`` (its factory assigns
    ``doc.ents`` and it has no ``spans_key`` set, as ``ldnet_ner`` in spans mode has)."""
    for name, pipe in nlp.pipeline:
        if "doc.ents" in nlp.get_pipe_meta(name).assigns and getattr(pipe, "spans_key", None) is None:
            return True
    return False


def span_records(group: SpanGroup) -> List[Dict[str, Any]]:
    """``[{"start", "end", "label"(, "score")}]`` of a span group, in character offsets."""
    spans = [{"start": s.start_char, "end": s.end_char, "label": s.label_} for s in group]
    scores = group.attrs.get("scores") if hasattr(group, "attrs") else None
    if scores is not None and len(scores) == len(spans):
        for span, score in zip(spans, scores):
            span["score"] = round(float(score), 6)  # probabilities to 1e-6
    return spans


def annotations(doc: Doc, ents: bool) -> Dict[str, Any]:
    """The ``"entities"`` (if ``ents``) and ``"spans"`` (if ``doc.spans`` has groups) of a doc."""
    out: Dict[str, Any] = {}
    if ents:
        out["entities"] = [{"start": e.start_char, "end": e.end_char, "label": e.label_} for e in doc.ents]
    if doc.spans:
        out["spans"] = {key: span_records(group) for key, group in doc.spans.items()}
    return out


def json_line(doc: Doc, record: Dict[str, Any], ents: bool) -> str:
    """The output record of a doc as one line of JSON."""
    out = dict(record)
    out.update(annotations(doc, ents))
    return srsly.json_dumps(out)


def with_fields(doc: Doc, record: Dict[str, Any], text_field: str) -> Doc:
    """``doc`` with the input record's fields other than the text in ``doc.user_data["fields"]``."""
    fields = {k: v for k, v in record.items() if k != text_field}
    if fields:
        doc.user_data[FIELDS_KEY] = fields
    return doc


def docbin_bytes(doc: Doc) -> bytes:
    """A one-doc ``DocBin`` (with user data) as bytes: how a Ray actor hands a doc back."""
    docbin = DocBin(store_user_data=True)
    docbin.add(doc)
    return docbin.to_bytes()
