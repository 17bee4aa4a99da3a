"""Odd inputs, very long docs and multiprocessing on a trained tiny pipeline."""
import os
import time

from spacy.language import Language
from spacy.tokens import Doc

from conftest import MAX_SEQUENCE_LENGTH, TRAIN_DATA, assert_well_formed, ents_of
from spacy_ldnet.sequences import Sequences, sequence_spans

NORMAL = [text for text, _ in TRAIN_DATA] + ["Mary Smith flew to London .", "Air France beat Google ."]
ODD = [
    "",
    "Paris",
    "   \n\t",
    "🙂🚀 \x00\x07 \u200b é中文",
    "\x00",
    "!!!",
    "John\u00a0Smith in 東京 \u2028 .",  # NBSP, CJK, line separator
]


def test_odd_inputs_mixed_with_normal_docs(trained_nlp):
    labels = set(trained_nlp.get_pipe("ldnet_ner").labels)
    alone = ents_of(trained_nlp.pipe(NORMAL))
    assert any(alone), "the trained pipeline should find entities in the normal texts"
    mixed = []
    for a, b in zip(NORMAL, ODD + ODD):
        mixed += [b, a]
    docs = list(trained_nlp.pipe(mixed, batch_size=len(mixed)))
    assert [d.text for d in docs] == mixed
    for doc in docs:
        assert_well_formed(doc, labels)
    assert ents_of(d for d in docs if d.text in NORMAL) == alone
    # each odd text alone (one-doc batches) also works
    for text in ODD:
        doc = trained_nlp(text)
        assert_well_formed(doc, labels)
        if not text:
            assert len(doc) == 0 and doc.ents == ()


def test_one_token_docs_and_prebuilt_docs(trained_nlp):
    labels = set(trained_nlp.get_pipe("ldnet_ner").labels)
    docs = [Doc(trained_nlp.vocab, words=[w]) for w in ["Paris", "John", ".", "🙂", " "]]
    docs.append(Doc(trained_nlp.vocab, words=[]))
    for doc in trained_nlp.pipe(docs):
        assert_well_formed(doc, labels)
        assert all(e.end - e.start == 1 for e in doc.ents)


def test_very_long_doc(trained_nlp):
    """A 20,000-token doc without sentence boundaries is read in windows of at
    most max_sequence_length tokens; the first window's prediction equals the
    prediction for those tokens alone, and no entity crosses a window edge."""
    sentence = "John Smith flew to Paris with Air France and then"  # no '.' -> hard cuts
    n_words = len(sentence.split())
    words = (sentence.split() * (20_000 // n_words + 1))[:20_000]
    doc = Doc(trained_nlp.vocab, words=words)
    assert len(doc) == 20_000 and not doc.has_annotation("SENT_START")
    labels = set(trained_nlp.get_pipe("ldnet_ner").labels)
    start = time.perf_counter()
    doc = trained_nlp(doc)
    elapsed = time.perf_counter() - start
    print(f"20,000 tokens annotated in {elapsed:.2f}s")
    assert_well_formed(doc, labels)
    assert len(doc.ents) > 0
    windows = sequence_spans(doc, MAX_SEQUENCE_LENGTH)
    assert len(windows) == -(-20_000 // MAX_SEQUENCE_LENGTH)
    edges = {s for s, _ in windows}
    for ent in doc.ents:
        assert not any(ent.start < e < ent.end for e in edges), f"{ent} crosses a window edge"
    s, e = windows[0]
    first = trained_nlp(Doc(trained_nlp.vocab, words=words[s:e]))
    assert [(x.start, x.end, x.label_) for x in doc.ents if x.end <= e] == ents_of([first])[0]


def test_long_doc_with_sentences(trained_nlp):
    """With sentence boundaries, each sentence is predicted as if alone."""
    trained_nlp.add_pipe("sentencizer", first=True)
    text = " ".join(NORMAL[:4] * 30)
    doc = trained_nlp(text)
    assert len(list(doc.sents)) == 4 * 30
    per_sentence = [ents_of([trained_nlp(t)])[0] for t in NORMAL[:4]]
    offset_ents = []
    for sent in doc.sents:
        offset_ents.append([(x.start - sent.start, x.end - sent.start, x.label_) for x in sent.ents])
    assert offset_ents == per_sentence * 30


def test_sequences_cover_every_token_once_and_pad_unpad_round_trip(trained_nlp):
    import numpy
    import pytest
    from thinc.api import NumpyOps

    ops = NumpyOps()
    docs = [Doc(trained_nlp.vocab, words=w) for w in (["a"] * 70, [], ["b", ".", "c"], ["d"])]
    seqs = Sequences.from_docs(docs, MAX_SEQUENCE_LENGTH)
    assert [(i, s, e) for i, s, e in seqs.spans if i == 0] == [(0, 0, 32), (0, 32, 64), (0, 64, 70)]
    assert len(seqs) == 5 and seqs.lengths == [32, 32, 6, 3, 1] and seqs.padded_length == 32
    arrays = [numpy.arange(len(d) * 2, dtype="float32").reshape(-1, 2) + i for i, d in enumerate(docs)]
    padded = seqs.pad(arrays, ops)  # (S, T, D)
    assert padded.shape == (5, 32, 2) and not padded[2, 6:].any()
    back = seqs.unpad(padded, ops)
    assert [b.shape for b in back] == [a.shape for a in arrays]
    for a, b in zip(arrays, back):
        numpy.testing.assert_array_equal(a, b)
    empty = Sequences.from_docs([Doc(trained_nlp.vocab, words=[])], MAX_SEQUENCE_LENGTH)
    assert len(empty) == 0 and empty.padded_length == 0
    assert [b.shape for b in empty.unpad(ops.alloc3f(0, 0, 2), ops)] == [(0, 2)]
    with pytest.raises(ValueError, match="max_sequence_length"):
        Sequences.from_docs(docs, 0)


@Language.component("_test_record_pid")
def _record_pid(doc):
    doc.user_data["pid"] = os.getpid()
    return doc


def test_multiprocess_pipe_equals_single_process(trained_nlp):
    trained_nlp.add_pipe("_test_record_pid")
    texts = (NORMAL + ODD) * 3
    single_docs = list(trained_nlp.pipe(texts))
    multi_docs = list(trained_nlp.pipe(texts, n_process=2, batch_size=4))
    assert ents_of(multi_docs) == ents_of(single_docs)
    assert any(ents_of(single_docs))
    # the second run really ran in worker processes
    assert {d.user_data["pid"] for d in single_docs} == {os.getpid()}
    assert os.getpid() not in {d.user_data["pid"] for d in multi_docs}
