"""ldnet_ner in spans mode (``spans_key``): chunks in ``doc.spans[key]``, not ``doc.ents``."""
from typing import List, Sequence, Tuple

import pytest
import spacy
from spacy.language import Language
from spacy.tokens import Doc, Span
from spacy.training import Example
from spacy.util import load_config
from thinc.api import Adam, fix_random_seed

from conftest import CONFIG_DIR, EXTRA_WORDS, ents_of, make_examples, set_random_vectors, tiny_model_config
from spacy_ldnet.ner.gold import aligned_span_tags

KEY = "chunks"
SPAN_SCORER = {"@scorers": "spacy.spancat_scorer.v1"}

#: (words, [(start_token, end_token, label), ...]): CoNLL-2000-style chunks.
CHUNK_DATA: List[Tuple[List[str], List[Tuple[int, int, str]]]] = [
    (
        "He reckons the current account deficit will narrow to only # 1.8 billion in September .".split(),
        [(0, 1, "NP"), (1, 2, "VP"), (2, 6, "NP"), (6, 8, "VP"), (8, 9, "PP"), (9, 13, "NP"), (13, 14, "PP"),
         (14, 15, "NP")],
    ),
    (
        "Rockwell International Corp. 's Tulsa unit said it signed a tentative agreement .".split(),
        [(0, 3, "NP"), (3, 6, "NP"), (6, 7, "VP"), (7, 8, "NP"), (8, 9, "VP"), (9, 12, "NP")],
    ),
]
LABELS = ["NP", "PP", "VP"]


def chunk_doc(vocab, words: Sequence[str], chunks, key: str = KEY) -> Doc:
    doc = Doc(vocab, words=list(words))
    doc.spans[key] = [Span(doc, s, e, label=label) for s, e, label in chunks]
    return doc


def make_chunk_nlp(key: str = KEY) -> Language:
    nlp = spacy.blank("en")
    set_random_vectors(nlp, [w for words, _ in CHUNK_DATA for w in words] + EXTRA_WORDS)
    nlp.add_pipe("ldnet_ner", config={"model": tiny_model_config(), "spans_key": key, "scorer": SPAN_SCORER})
    return nlp


def chunk_examples(nlp: Language) -> List[Example]:
    return [
        Example(Doc(nlp.vocab, words=words), chunk_doc(nlp.vocab, words, chunks)) for words, chunks in CHUNK_DATA
    ]


def spans_of(docs, key: str = KEY) -> List[List[Tuple[int, int, str]]]:
    return [[(s.start, s.end, s.label_) for s in doc.spans.get(key, [])] for doc in docs]


def plain_docs(nlp: Language) -> List[Doc]:
    return [Doc(nlp.vocab, words=words) for words, _ in CHUNK_DATA]


GOLD = [chunks for _, chunks in CHUNK_DATA]


@pytest.fixture(scope="module")
def chunk_nlp() -> Language:
    """A tiny spans-mode ldnet_ner overfit on :data:`CHUNK_DATA`."""
    nlp = make_chunk_nlp()
    examples = chunk_examples(nlp)
    fix_random_seed(0)
    optimizer = nlp.initialize(lambda: examples, sgd=Adam(0.01))
    for i in range(1, 301):
        nlp.update(examples, sgd=optimizer, drop=0.0, losses={})
        if i % 5 == 0 and spans_of(nlp.pipe(plain_docs(nlp))) == GOLD:
            return nlp
    pytest.fail(f"spans mode did not overfit two chunked sentences: {spans_of(nlp.pipe(plain_docs(nlp)))}")


def test_spans_mode_overfits_and_writes_spans_not_ents(chunk_nlp):
    ner = chunk_nlp.get_pipe("ldnet_ner")
    assert ner.spans_key == KEY
    assert list(ner.labels) == LABELS  # read from reference.spans[KEY] at initialize
    docs = list(chunk_nlp.pipe(plain_docs(chunk_nlp)))
    assert spans_of(docs) == GOLD
    for doc in docs:
        assert type(doc.spans[KEY]).__name__ == "SpanGroup"
        assert len(doc.ents) == 0 and not doc.has_annotation("ENT_IOB")
        assert list(doc.spans) == [KEY, "ldnet_ner_scores"]  # the spans and their probabilities
        assert spans_of([doc], "ldnet_ner_scores") == spans_of([doc])


def test_spans_mode_leaves_existing_ents_untouched(chunk_nlp):
    doc = Doc(chunk_nlp.vocab, words=CHUNK_DATA[1][0])
    doc.ents = [Span(doc, 0, 3, "ORG"), Span(doc, 4, 5, "LOC")]
    doc = chunk_nlp(doc)
    assert ents_of([doc]) == [[(0, 3, "ORG"), (4, 5, "LOC")]]
    assert spans_of([doc]) == [GOLD[1]]


def test_spans_mode_empty_doc_gets_empty_group(chunk_nlp):
    doc = chunk_nlp(Doc(chunk_nlp.vocab, words=[]))
    assert KEY in doc.spans and len(doc.spans[KEY]) == 0


def test_ner_path_still_writes_ents(trained_nlp):
    ner = trained_nlp.get_pipe("ldnet_ner")
    assert ner.spans_key is None
    assert trained_nlp.config["components"]["ldnet_ner"]["spans_key"] is None
    examples = make_examples(trained_nlp)
    docs = list(trained_nlp.pipe([eg.reference.text for eg in examples]))
    assert ents_of(docs) == [[(e.start, e.end, e.label_) for e in eg.reference.ents] for eg in examples]
    assert all(list(doc.spans) == ["ldnet_ner_scores"] for doc in docs)  # the entities' probabilities
    scores = trained_nlp.evaluate(examples)
    assert scores["ents_f"] == 1.0 and not any(k.startswith("spans_") for k in scores)


def test_round_trip_keeps_spans_key_and_predictions(chunk_nlp, tmp_path):
    before = spans_of(chunk_nlp.pipe(plain_docs(chunk_nlp)))
    chunk_nlp.to_disk(tmp_path / "chunker")
    cfg = load_config(tmp_path / "chunker" / "config.cfg")
    assert cfg["components"]["ldnet_ner"]["spans_key"] == KEY
    assert "spans_key" not in (tmp_path / "chunker" / "ldnet_ner" / "cfg").read_text()
    loaded = spacy.load(tmp_path / "chunker")
    assert loaded.get_pipe("ldnet_ner").spans_key == KEY
    docs = list(loaded.pipe(plain_docs(loaded)))
    assert spans_of(docs) == before == GOLD
    assert all(len(doc.ents) == 0 for doc in docs)
    # the same from bytes
    again = spacy.blank("en")
    again.add_pipe("ldnet_ner", config={"model": tiny_model_config(), "spans_key": KEY, "scorer": SPAN_SCORER})
    again.from_bytes(chunk_nlp.to_bytes())
    assert spans_of(again.pipe(plain_docs(again))) == GOLD


def test_evaluate_reports_span_scores(chunk_nlp):
    scores = chunk_nlp.evaluate(chunk_examples(chunk_nlp))
    assert scores[f"spans_{KEY}_f"] == 1.0
    assert scores[f"spans_{KEY}_p"] == 1.0 and scores[f"spans_{KEY}_r"] == 1.0
    assert set(scores[f"spans_{KEY}_per_type"]) == set(LABELS)
    assert "ents_f" not in scores
    # a wrong prediction lowers the score: gold with one chunk relabelled
    words, chunks = CHUNK_DATA[1]
    wrong = [(s, e, "ADJP" if (s, e) == (7, 8) else label) for s, e, label in chunks]
    eg = Example(Doc(chunk_nlp.vocab, words=words), chunk_doc(chunk_nlp.vocab, words, wrong))
    scores = chunk_nlp.evaluate([eg])
    assert scores[f"spans_{KEY}_p"] == pytest.approx(5 / 6)


def test_scorer_must_match_mode():
    nlp = spacy.blank("en")
    with pytest.raises(ValueError, match="spancat_scorer"):
        nlp.add_pipe("ldnet_ner", config={"model": tiny_model_config(), "spans_key": KEY})
    with pytest.raises(ValueError, match="spans_key"):
        nlp.add_pipe("ldnet_ner", config={"model": tiny_model_config(), "scorer": SPAN_SCORER})
    with pytest.raises(ValueError, match="non-empty"):
        nlp.add_pipe("ldnet_ner", config={"model": tiny_model_config(), "spans_key": "", "scorer": SPAN_SCORER})


def test_initialize_without_spans_names_the_key():
    nlp = make_chunk_nlp(key="other")
    examples = chunk_examples(nlp)  # spans under "chunks", component reads "other"
    with pytest.raises(ValueError, match="other"):
        nlp.initialize(lambda: examples)


def test_aligned_span_tags_identical_tokens():
    nlp = spacy.blank("en")
    words, chunks = CHUNK_DATA[1]
    eg = Example(Doc(nlp.vocab, words=words), chunk_doc(nlp.vocab, words, chunks))
    assert aligned_span_tags(eg, KEY) == [
        "B-NP", "I-NP", "L-NP", "B-NP", "I-NP", "L-NP", "U-VP", "U-NP", "U-VP", "B-NP", "I-NP", "L-NP", "O",
    ]
    # no group under the key: unannotated, not "all O"
    assert aligned_span_tags(eg, "missing") == [None] * len(words)


def test_aligned_span_tags_misaligned_tokens():
    nlp = spacy.blank("en")
    # reference: "New York-based" = [New York] [- based]; predicted "York-based" is one token
    ref = chunk_doc(nlp.vocab, ["in", "New", "York", "-", "based", "firms"], [(0, 1, "PP"), (1, 3, "NP"), (3, 6, "NP")])
    ref2 = chunk_doc(nlp.vocab, ["in", "New", "York", "-", "based", "firms", "today"], [(0, 1, "PP"), (1, 6, "NP")])
    pred = Doc(nlp.vocab, words=["in", "New", "York-based", "firms"], spaces=[True, True, True, False])
    tags = aligned_span_tags(Example(pred, ref), KEY)
    assert tags[0] == "U-PP"
    assert tags[1:] == [None, None, None]  # the NPs cannot be encoded on these tokens
    pred2 = Doc(nlp.vocab, words=["in", "New", "York-based", "firms", "today"])
    tags2 = aligned_span_tags(Example(pred2, ref2), KEY)
    assert tags2 == ["U-PP", "B-NP", "I-NP", "L-NP", "O"]


def test_loss_skips_unannotated_references(chunk_nlp):
    ner = chunk_nlp.get_pipe("ldnet_ner")
    words = CHUNK_DATA[0][0]
    unannotated = Example(Doc(chunk_nlp.vocab, words=words), Doc(chunk_nlp.vocab, words=words))
    scores = ner.model.predict([unannotated.predicted])
    loss, d_scores = ner.get_loss([unannotated], scores)
    assert loss == 0.0 and float(abs(d_scores[0]).sum()) == 0.0
    annotated = chunk_examples(chunk_nlp)[:1]
    annotated[0].reference.spans[KEY] = [Span(annotated[0].reference, 0, 2, "NP")]  # wrong on purpose
    loss, d_scores = ner.get_loss(annotated, ner.model.predict([annotated[0].predicted]))
    assert loss > 0.0 and float(abs(d_scores[0]).sum()) > 0.0


CHUNK_CFG = CONFIG_DIR / "conll00_chunk.cfg"
BASE_CFG = CONFIG_DIR / "conll03_ner.cfg"


# Settings the NER config changed after the chunk runs, which the chunk
# configs keep at their old values until chunking is retrained with them.
CHUNK_KEEPS = {"char_dropout": 0.0}
#: Training settings chunking keeps from before the CoNLL-2003 configs moved
#: to 12,000 steps: the chunkers were not retrained with them.
CHUNK_TRAINING_KEEPS = {"max_steps": 8000}


def test_chunk_config_is_the_base_experiment_in_spans_mode():
    base, cfg = load_config(BASE_CFG), load_config(CHUNK_CFG)
    base_model = dict(base["components"]["ldnet_ner"]["model"])
    base_model["tok2vec"] = {**base_model["tok2vec"], **CHUNK_KEEPS}
    assert cfg["components"]["ldnet_ner"]["model"] == base_model
    assert cfg["components"]["ldnet_ner"]["spans_key"] == KEY
    assert cfg["components"]["ldnet_ner"]["scorer"] == SPAN_SCORER
    assert cfg["corpora"] == base["corpora"] and cfg["initialize"] == base["initialize"]
    for key in set(base["training"]) | set(cfg["training"]):
        if key in CHUNK_TRAINING_KEEPS:
            assert cfg["training"][key] == CHUNK_TRAINING_KEEPS[key], key
        elif key != "score_weights":
            assert cfg["training"][key] == base["training"][key], key
    weights = cfg["training"]["score_weights"]
    assert weights[f"spans_{KEY}_f"] == 1.0
    assert all(weights[k] is None for k in ("ents_f", "ents_p", "ents_r", "ents_per_type"))


def test_chunk_config_weights_only_span_f():
    """What spacy train weighs: the factory's default entity weights must not
    halve the span F score."""
    nlp = spacy.util.load_model_from_config(load_config(CHUNK_CFG), auto_fill=True, validate=True)
    assert nlp.get_pipe("ldnet_ner").spans_key == KEY
    weights = {k: v for k, v in nlp.config["training"]["score_weights"].items() if v}
    assert weights == {f"spans_{KEY}_f": 1.0}
