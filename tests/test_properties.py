"""Property tests (hypothesis) of ``ldnet_ner`` over arbitrary Unicode text and token splits.

Properties, on the session's trained tiny pipeline (and an LM pipeline for 3):

1. annotating never raises: any Unicode text but surrogates (control
   characters, combining marks, right-to-left scripts, emoji, whitespace runs,
   very long tokens, the empty string), any split into words and spaces, with
   or without sentence boundaries, docs longer than ``max_sequence_length``;
2. the output is well formed: entities inside the doc, non-empty, ordered,
   non-overlapping, known labels, consistent token IOB attributes, character
   offsets that slice the text to the entity text; the tokens are untouched;
   the one other span group is ``doc.spans["ldnet_ner_scores"]``: the same
   spans, each with a probability in (0, 1];
3. the output does not depend on the batch: a doc annotated alone or in any
   batch of other docs, in any order and batch size, gets the same entities
   and the same emission scores;
4. spans mode (``spans_key``) writes the same spans as entity mode does, to
   ``doc.spans[key]``, and leaves ``doc.ents`` empty.

``derandomize=True`` and no example database: every run draws the same examples.
"""
from typing import List, Optional, Sequence, Tuple

import numpy
import pytest
import spacy
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from spacy.language import Language
from spacy.tokens import Doc

from conftest import MAX_SEQUENCE_LENGTH, TRAIN_DATA, assert_well_formed, training_words
from spacy_ldnet.ner.confidence import SCORES_KEY
from test_lm_embedder import make_lm_nlp, tiny_lm_path  # noqa: F401 (tiny_lm_path: a fixture)

KEY = "chunks"


def props(max_examples: int):
    """Deterministic hypothesis settings sized so the file runs in well under a minute."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# ------------------------------------------------------------------ strategies
#: Every code point but surrogates (which UTF-8 text cannot hold): all other categories.
UNICODE = st.characters(exclude_categories=("Cs",))
#: The training entities, so that the trained pipeline finds entities in the generated text.
ENTITY_TEXTS = [text[s:e] for text, ents in TRAIN_DATA for s, e, _ in ents]
SPECIAL = [
    "\x00", "\x07", "\x1b", "\x7f", "\u0085",  # control characters
    "e\u0301", "\u0301", "\u0915\u094d\u0937",  # combining marks, a Devanagari conjunct
    "\u05e9\u05dc\u05d5\u05dd", "\u0645\u0631\u062d\u0628\u0627", "\u202e", "\u200f",  # RTL text and marks
    "🙂", "👨\u200d👩\u200d👧", "🇫🇷", "\u200b", "\ufeff", "\u00a0", "\u3000", "\u2028", "\r\n",
    "東京", "Zürich", ".", "!", "?", "。",
]
WHITESPACE_RUN = st.text(st.sampled_from(" \t\n\r\u00a0\u2028\u3000"), min_size=1, max_size=6)
LONG_TOKEN = st.text(st.characters(exclude_categories=("Cs", "Zs", "Zl", "Zp", "Cc")), min_size=60, max_size=300)
PIECE = st.one_of(
    st.text(UNICODE, min_size=1, max_size=10),
    st.sampled_from(ENTITY_TEXTS),
    st.sampled_from(training_words()),
    st.sampled_from(SPECIAL),
    WHITESPACE_RUN,
    LONG_TOKEN,
)


def short_or_long(element) -> st.SearchStrategy:
    """Lists of ``element``: up to ``max_sequence_length`` long, or longer (up to 2.5 times), so cut."""
    n = MAX_SEQUENCE_LENGTH
    return st.one_of(st.lists(element, max_size=n), st.lists(element, min_size=n + 1, max_size=int(2.5 * n)))


TEXT = short_or_long(st.tuples(PIECE, st.sampled_from(["", " ", "\n"]))).map(
    lambda parts: "".join(p + sep for p, sep in parts)
)

#: (word, space after it, sentence start): what ``Doc(words=, spaces=, sent_starts=)`` takes
#: (any non-empty word, whitespace alone included).
TOKEN = st.tuples(PIECE, st.booleans(), st.sampled_from([True, False, None]))
DocSpec = Tuple[Tuple[Tuple[str, bool, Optional[bool]], ...], bool]
#: Short and long docs (so cut), with or without sentence starts.
DOC_SPEC = st.tuples(short_or_long(TOKEN).map(tuple), st.booleans())


def build(vocab, spec: DocSpec) -> Doc:
    """A fresh Doc from a :data:`DOC_SPEC` example."""
    tokens, with_sents = spec
    words = [w for w, _, _ in tokens]
    spaces = [s for _, s, _ in tokens]
    sent_starts = [b for _, _, b in tokens] if with_sents else None
    return Doc(vocab, words=words, spaces=spaces, sent_starts=sent_starts)


# -------------------------------------------------------------------- fixtures
def load_spans_mode(path) -> Language:
    """The pipeline at ``path`` with ``spans_key`` set: the same weights, writing ``doc.spans[KEY]``."""
    return spacy.load(
        path,
        config={
            "components.ldnet_ner.spans_key": KEY,
            "components.ldnet_ner.scorer": {"@scorers": "spacy.spancat_scorer.v1"},
        },
    )


@pytest.fixture(scope="module")
def nlp(trained_pipeline_path) -> Language:
    return spacy.load(trained_pipeline_path)


@pytest.fixture(scope="module")
def spans_nlp(trained_pipeline_path) -> Language:
    nlp = load_spans_mode(trained_pipeline_path)
    assert nlp.get_pipe("ldnet_ner").spans_key == KEY
    return nlp


@pytest.fixture(scope="module")
def lm_nlp(tiny_lm_path) -> Language:  # noqa: F811 (the imported fixture)
    return make_lm_nlp(tiny_lm_path)[0]


# --------------------------------------------------------------------- helpers
def labels_of(nlp: Language) -> set:
    return set(nlp.get_pipe("ldnet_ner").labels)


def triples(spans) -> List[Tuple[int, int, str]]:
    return [(s.start, s.end, s.label_) for s in spans]


def describe(doc: Doc) -> None:
    """Hypothesis statistics (``--hypothesis-show-statistics``): how often the examples
    hold entities, are cut into windows, have sentence starts."""
    event(f"entities: {bool(doc.ents)}")
    event(f"longer than max_sequence_length: {len(doc) > MAX_SEQUENCE_LENGTH}")
    event(f"sentence starts: {len(doc) > 0 and doc.has_annotation('SENT_START')}")


def check_entities(doc: Doc, labels: set, tokens: Sequence[str]) -> None:
    """Property 2 on an annotated doc whose tokens before annotation were ``tokens``."""
    describe(doc)
    assert [t.text for t in doc] == list(tokens), "the component changed the tokens"
    assert_well_formed(doc, labels)
    for ent in doc.ents:
        assert doc.text[ent.start_char : ent.end_char] == ent.text
    assert list(doc.spans) == [SCORES_KEY]
    check_scores(doc, triples(doc.ents))


def check_scores(doc: Doc, spans: List[Tuple[int, int, str]]) -> None:
    """The scores group holds ``spans``, one float32 probability in (0, 1] each."""
    scores = numpy.asarray(doc.spans[SCORES_KEY].attrs["scores"])
    assert triples(doc.spans[SCORES_KEY]) == spans
    assert scores.dtype == numpy.float32 and scores.shape == (len(spans),)
    assert ((scores > 0) & (scores <= 1)).all()


def check_spans(doc: Doc, labels: set, tokens: Sequence[str]) -> None:
    """Property 2 in spans mode: ``doc.spans[KEY]`` well formed, ``doc.ents`` untouched."""
    assert [t.text for t in doc] == list(tokens)
    assert KEY in doc.spans and sorted(doc.spans) == sorted([KEY, SCORES_KEY])
    check_scores(doc, triples(doc.spans[KEY]))
    assert doc.ents == () and all(t.ent_iob_ == "" for t in doc)
    prev_end = 0
    for span in doc.spans[KEY]:
        assert prev_end <= span.start < span.end <= len(doc)
        assert span.label_ in labels
        assert doc.text[span.start_char : span.end_char] == span.text
        prev_end = span.end


# ---------------------------------------------------------- properties 1 and 2
@props(60)
@given(text=TEXT)
def test_any_text_is_annotated_with_well_formed_entities(nlp, text):
    tokens = [t.text for t in nlp.make_doc(text)]
    doc = nlp(text)
    assert doc.text == text
    check_entities(doc, labels_of(nlp), tokens)


@props(60)
@given(spec=DOC_SPEC)
def test_any_token_split_is_annotated_with_well_formed_entities(nlp, spec):
    doc = build(nlp.vocab, spec)
    tokens = [t.text for t in doc]
    check_entities(nlp(doc), labels_of(nlp), tokens)


# ----------------------------------------------------------------- property 4
@props(30)
@given(text=TEXT)
def test_spans_mode_on_any_text_equals_entity_mode(nlp, spans_nlp, text):
    doc = spans_nlp(text)
    check_spans(doc, labels_of(spans_nlp), [t.text for t in nlp.make_doc(text)])
    assert triples(doc.spans[KEY]) == triples(nlp(text).ents)


@props(30)
@given(spec=DOC_SPEC)
def test_spans_mode_on_any_token_split_equals_entity_mode(nlp, spans_nlp, spec):
    doc = spans_nlp(build(spans_nlp.vocab, spec))
    check_spans(doc, labels_of(spans_nlp), [w for w, _, _ in spec[0]])
    assert triples(doc.spans[KEY]) == triples(nlp(build(nlp.vocab, spec)).ents)


# ----------------------------------------------------------------- property 3
BATCH = st.tuples(
    st.lists(DOC_SPEC, min_size=1, max_size=6),  # the docs of the batch
    st.randoms(use_true_random=False),  # their order
    st.integers(min_value=1, max_value=7),  # batch_size
)


def emissions(nlp: Language, docs: List[Doc]) -> List[numpy.ndarray]:
    return [numpy.asarray(x) for x in nlp.get_pipe("ldnet_ner").model.predict(docs)]


def check_batch_invariance(nlp: Language, batch) -> None:
    specs, rng, batch_size = batch
    alone_ents = [triples(nlp(build(nlp.vocab, spec)).ents) for spec in specs]
    order = list(range(len(specs)))
    rng.shuffle(order)
    docs = list(nlp.pipe([build(nlp.vocab, specs[i]) for i in order], batch_size=batch_size))
    assert [triples(docs[k].ents) for k in range(len(order))] == [alone_ents[i] for i in order]
    # emission scores: each non-empty doc alone vs the shuffled batch, cut into batch_size chunks
    shuffled = [build(nlp.vocab, specs[i]) for i in order]
    in_batch = []
    for start in range(0, len(shuffled), batch_size):
        chunk = shuffled[start : start + batch_size]
        in_batch += emissions(nlp, chunk) if any(len(d) for d in chunk) else [None] * len(chunk)
    for k, i in enumerate(order):
        doc = build(nlp.vocab, specs[i])
        if len(doc):
            numpy.testing.assert_allclose(in_batch[k], emissions(nlp, [doc])[0], rtol=0, atol=1e-5)


@props(25)
@given(batch=BATCH)
def test_annotation_does_not_depend_on_the_batch(nlp, batch):
    check_batch_invariance(nlp, batch)


@props(12)
@given(batch=BATCH)
def test_lm_pipeline_annotation_does_not_depend_on_the_batch(lm_nlp, batch):
    check_batch_invariance(lm_nlp, batch)
