"""BILUO tag inventory and the tag transitions a BILUO sequence may use.

This module imports only numpy: it is shared by the torch CRF in
:mod:`spacy_ldnet.ner.crf` and the spaCy glue, and neither torch nor spaCy is
needed to build a tag inventory.

Scheme: spaCy's BILUO (Begin, In, Last, Unit, Out), which is the same scheme
as IOBES (Ratinov & Roth 2009). LD-Net (Liu et al. 2018, section 4.1) labels
entities with a CRF over such tags; the transition constraints below are the
ones that make a CRF decode only well-formed entity spans (Lample et al. 2016,
section 2.2, use IOBES with a CRF in the same way).

Tag strings are ``"O"`` or ``"<prefix>-<label>"`` with prefix in ``B I L U``.
The prefix is split off at the first ``"-"`` only, so labels may themselves
contain ``"-"`` (``"B-WORK-OF-ART"`` has label ``"WORK-OF-ART"``).
"""
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy

OUTSIDE = "O"
BEGIN = "B"
INSIDE = "I"
LAST = "L"
UNIT = "U"
#: Entity prefixes, in the order :func:`biluo_tag_names` lists them per label.
ENTITY_PREFIXES: Tuple[str, ...] = (BEGIN, INSIDE, LAST, UNIT)
#: Pseudo-tag names for the two extra rows/columns of :func:`allowed_transitions`.
START_TAG = "<START>"
END_TAG = "<END>"


def biluo_tag_names(labels: Sequence[str]) -> List[str]:
    """Return the tag inventory for entity ``labels``.

    labels: entity labels (e.g. ``["PER", "LOC"]``), in the order their tags
        should appear; a label may contain ``"-"``.

    Returns: ``1 + 4 * len(labels)`` tag names: index 0 is ``"O"``, then for
        each label ``X`` in order ``"B-X", "I-X", "L-X", "U-X"``.

    Raises:
        ValueError: a label is not a non-empty string, or a label is repeated.
    """
    names = [OUTSIDE]
    seen = set()
    for label in labels:
        if not isinstance(label, str) or not label:
            raise ValueError(
                f"Entity labels must be non-empty strings, got {label!r} in {list(labels)!r}."
            )
        if label in seen:
            raise ValueError(
                f"Duplicate entity label {label!r} in {list(labels)!r}: each label "
                f"must appear once so that every tag has one index."
            )
        seen.add(label)
        names.extend(f"{prefix}-{label}" for prefix in ENTITY_PREFIXES)
    return names


def split_tag(tag: str) -> Tuple[str, Optional[str]]:
    """Split a BILUO tag into ``(prefix, label)``.

    ``"O"`` gives ``("O", None)``; ``"B-WORK-OF-ART"`` gives
    ``("B", "WORK-OF-ART")`` (split at the first ``"-"`` only).

    Raises:
        ValueError: the tag is not ``"O"`` nor ``"<B|I|L|U>-<non-empty label>"``
            (this includes spaCy's missing-annotation tag ``"-"`` and ``""``).
    """
    if tag == OUTSIDE:
        return OUTSIDE, None
    prefix, sep, label = tag.partition("-")
    if not sep or prefix not in ENTITY_PREFIXES or not label:
        raise ValueError(
            f"Not a BILUO tag: {tag!r}. Expected 'O' or '<B|I|L|U>-<label>'"
            + (" ('-' is spaCy's marker for a missing annotation)" if tag == "-" else "")
            + "."
        )
    return prefix, label


def tag_to_id_map(tag_names: Sequence[str]) -> Dict[str, int]:
    """Return ``{tag: index}`` for an inventory (e.g. from :func:`biluo_tag_names`).

    Raises:
        ValueError: a tag name is repeated.
    """
    table: Dict[str, int] = {}
    for i, tag in enumerate(tag_names):
        if tag in table:
            raise ValueError(f"Duplicate tag {tag!r} in the tag inventory.")
        table[tag] = i
    return table


def tags_to_ids(tags: Iterable[str], tag_names: Sequence[str]) -> List[int]:
    """Map tag strings to their indices in ``tag_names``.

    Raises:
        ValueError: a tag is not in the inventory (e.g. spaCy's ``"-"`` for a
            missing annotation, which the caller must handle before this).
    """
    table = tag_to_id_map(tag_names)
    ids = []
    for tag in tags:
        try:
            ids.append(table[tag])
        except KeyError:
            raise ValueError(
                f"Tag {tag!r} is not in the tag inventory ({len(table)} tags: "
                f"{list(tag_names)[:9]}{'...' if len(table) > 9 else ''})."
            ) from None
    return ids


def ids_to_tags(ids: Iterable[int], tag_names: Sequence[str]) -> List[str]:
    """Map tag indices back to tag strings.

    Raises:
        ValueError: an index is outside ``[0, len(tag_names))``.
    """
    out = []
    for i in ids:
        i = int(i)
        if not 0 <= i < len(tag_names):
            raise ValueError(f"Tag index {i} out of range for {len(tag_names)} tags.")
        out.append(tag_names[i])
    return out


def _is_allowed(prev: Tuple[str, Optional[str]], nxt: Tuple[str, Optional[str]]) -> bool:
    """BILUO rule for one transition between two real tags."""
    prev_prefix, prev_label = prev
    next_prefix, next_label = nxt
    if prev_prefix in (BEGIN, INSIDE):
        # Inside an open entity: continue it or close it, same label only.
        return next_prefix in (INSIDE, LAST) and next_label == prev_label
    # After O, L-X or U-X no entity is open: O, or open (B) or emit (U) one.
    return next_prefix in (OUTSIDE, BEGIN, UNIT)


def allowed_transitions(tag_names: Sequence[str]) -> numpy.ndarray:
    """Return the BILUO transition-constraint mask for a tag inventory.

    tag_names: the K tags, each ``"O"`` or ``"<B|I|L|U>-<label>"`` (any order,
        e.g. from :func:`biluo_tag_names`).

    Returns: bool array of shape (K + 2, K + 2); entry ``[i, j]`` is True when
        tag ``j`` may follow tag ``i``. Row/column ``K`` is START (before the
        first token) and ``K + 1`` is END (after the last token). Allowed:

        - ``O -> O, B-*, U-*, END``
        - ``B-X -> I-X, L-X`` and ``I-X -> I-X, L-X`` (an open entity must
          continue or close with the same label)
        - ``L-X, U-X -> O, B-*, U-*, END``
        - ``START -> O, B-*, U-*``
        - nothing into START, nothing out of END.

        Pass it as ``constraint_mask`` to
        :class:`spacy_ldnet.ner.crf.ConditionalRandomField`.

    Raises:
        ValueError: a tag name is malformed (see :func:`split_tag`) or repeated.
    """
    tag_to_id_map(tag_names)  # rejects duplicates
    parsed = [split_tag(tag) for tag in tag_names]
    num_tags = len(parsed)
    start, end = num_tags, num_tags + 1
    allowed = numpy.zeros((num_tags + 2, num_tags + 2), dtype=bool)
    for i, prev in enumerate(parsed):
        for j, nxt in enumerate(parsed):
            allowed[i, j] = _is_allowed(prev, nxt)
        # A sequence may end only when no entity is open.
        allowed[i, end] = prev[0] in (OUTSIDE, LAST, UNIT)
    for j, (prefix, _) in enumerate(parsed):
        # A sequence may start only where no entity is open yet.
        allowed[start, j] = prefix in (OUTSIDE, BEGIN, UNIT)
    return allowed
