"""Tests for spacy_ldnet.ner.tags: BILUO inventory and transition constraints."""
import numpy
import pytest

from spacy_ldnet.ner.tags import (
    allowed_transitions,
    biluo_tag_names,
    ids_to_tags,
    split_tag,
    tag_to_id_map,
    tags_to_ids,
)


def test_inventory_order():
    assert biluo_tag_names([]) == ["O"]
    assert biluo_tag_names(["PER", "LOC"]) == [
        "O",
        "B-PER", "I-PER", "L-PER", "U-PER",
        "B-LOC", "I-LOC", "L-LOC", "U-LOC",
    ]
    # Order of labels is kept, labels may contain "-".
    assert biluo_tag_names(["WORK-OF-ART", "A"])[1:6] == [
        "B-WORK-OF-ART", "I-WORK-OF-ART", "L-WORK-OF-ART", "U-WORK-OF-ART", "B-A",
    ]


@pytest.mark.parametrize("labels", [["PER", "PER"], ["PER", ""], [""]])
def test_inventory_rejects_duplicate_or_empty_labels(labels):
    with pytest.raises(ValueError):
        biluo_tag_names(labels)


def test_allowed_transitions_one_label():
    names = ["O", "B-PER", "I-PER", "L-PER", "U-PER", "START", "END"]
    # Written out by hand from the BILUO rules.
    expected_pairs = {
        ("O", "O"), ("O", "B-PER"), ("O", "U-PER"), ("O", "END"),
        ("B-PER", "I-PER"), ("B-PER", "L-PER"),
        ("I-PER", "I-PER"), ("I-PER", "L-PER"),
        ("L-PER", "O"), ("L-PER", "B-PER"), ("L-PER", "U-PER"), ("L-PER", "END"),
        ("U-PER", "O"), ("U-PER", "B-PER"), ("U-PER", "U-PER"), ("U-PER", "END"),
        ("START", "O"), ("START", "B-PER"), ("START", "U-PER"),
    }
    allowed = allowed_transitions(biluo_tag_names(["PER"]))
    assert allowed.dtype == numpy.bool_
    assert allowed.shape == (7, 7)
    got_pairs = {(names[i], names[j]) for i, j in zip(*numpy.nonzero(allowed))}
    assert got_pairs == expected_pairs


def test_allowed_transitions_two_labels():
    names = biluo_tag_names(["PER", "LOC"])
    allowed = allowed_transitions(names)
    idx = {n: i for i, n in enumerate(names)}
    start, end = len(names), len(names) + 1
    assert allowed.shape == (11, 11)
    assert not allowed[idx["B-PER"], idx["I-LOC"]]
    assert not allowed[idx["I-PER"], idx["L-LOC"]]
    assert not allowed[idx["B-PER"], idx["O"]]
    assert not allowed[idx["O"], idx["I-LOC"]]
    assert not allowed[idx["O"], idx["L-PER"]]
    assert not allowed[idx["I-LOC"], end]
    assert not allowed[start, idx["L-LOC"]]
    assert allowed[idx["L-PER"], idx["B-LOC"]]
    assert allowed[idx["U-LOC"], idx["U-PER"]]
    assert allowed[idx["I-LOC"], idx["L-LOC"]]
    assert allowed[start, idx["U-LOC"]]
    assert not allowed[:, start].any()  # nothing into START
    assert not allowed[end, :].any()  # nothing out of END


def test_labels_are_split_at_first_dash():
    names = biluo_tag_names(["A", "A-B"])
    allowed = allowed_transitions(names)
    idx = {n: i for i, n in enumerate(names)}
    assert split_tag("I-A-B") == ("I", "A-B")
    assert allowed[idx["B-A"], idx["I-A"]]
    assert not allowed[idx["B-A"], idx["I-A-B"]]
    assert allowed[idx["B-A-B"], idx["L-A-B"]]
    assert not allowed[idx["I-A-B"], idx["L-A"]]


@pytest.mark.parametrize("bad", ["-", "", "PER", "X-PER", "B-", "o"])
def test_malformed_tags_raise(bad):
    with pytest.raises(ValueError):
        split_tag(bad)
    with pytest.raises(ValueError):
        allowed_transitions(["O", bad])


def test_id_helpers():
    names = biluo_tag_names(["PER"])
    assert tag_to_id_map(names) == {n: i for i, n in enumerate(names)}
    ids = tags_to_ids(["O", "B-PER", "L-PER", "U-PER"], names)
    assert ids == [0, 1, 3, 4]
    assert ids_to_tags(ids, names) == ["O", "B-PER", "L-PER", "U-PER"]
    with pytest.raises(ValueError):
        tags_to_ids(["B-LOC"], names)
    with pytest.raises(ValueError):
        ids_to_tags([5], names)
    with pytest.raises(ValueError):
        allowed_transitions(["O", "O"])


def test_spacy_gold_sequences_are_allowed():
    spacy = pytest.importorskip("spacy")
    from spacy.training import offsets_to_biluo_tags

    nlp = spacy.blank("en")
    examples = [
        ("Alice met Bob in Paris .", [(0, 5, "PER"), (10, 13, "PER"), (17, 22, "LOC")]),
        ("New York City is big", [(0, 13, "LOC")]),
        ("He flew to Los Angeles", [(11, 22, "LOC")]),
        ("John Smith Mary Jones", [(0, 10, "PER"), (11, 21, "PER")]),  # adjacent entities
        ("Berlin Paris", [(0, 6, "LOC"), (7, 12, "LOC")]),
        ("Obama", [(0, 5, "PER")]),
        ("nothing here", []),
        ("Barack Obama visited the Big Apple Inc today", [(0, 12, "PER"), (25, 38, "ORG")]),
    ]
    names = biluo_tag_names(["PER", "LOC", "ORG"])
    allowed = allowed_transitions(names)
    start, end = len(names), len(names) + 1
    seen_prefixes = set()
    for text, ents in examples:
        doc = nlp.make_doc(text)
        gold = offsets_to_biluo_tags(doc, ents)
        assert "-" not in gold
        ids = tags_to_ids(gold, names)
        steps = [start] + ids + [end]
        for a, b in zip(steps[:-1], steps[1:]):
            assert allowed[a, b], (text, gold)
        seen_prefixes.update(tag[0] for tag in gold)
    assert seen_prefixes == {"O", "B", "I", "L", "U"}
