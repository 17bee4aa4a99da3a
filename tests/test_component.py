"""The ldnet_ner component: overfitting, serialisation round trips, labels,
loss on incomplete annotation, and its errors."""
import shutil

import numpy
import pytest
import spacy
from spacy.training import Example
from thinc.api import Adam, fix_random_seed

from conftest import (
    TRAIN_DATA,
    ents_of,
    gold_ents,
    make_examples,
    make_nlp,
    tiny_model_config,
    train_until_exact,
)

TWO = TRAIN_DATA[:2]
UNSEEN = ["Mary Smith flew to London .", "Google beat France ."]


def _emissions(nlp, texts):
    pipe = nlp.get_pipe("ldnet_ner")
    return pipe.model.predict([nlp.make_doc(t) for t in texts])


def _assert_same_predictions(nlp_a, nlp_b, texts):
    assert ents_of(nlp_a.pipe(texts)) == ents_of(nlp_b.pipe(texts))
    for a, b in zip(_emissions(nlp_a, texts), _emissions(nlp_b, texts)):
        assert a.shape == b.shape
        numpy.testing.assert_allclose(a, b, atol=1e-6)


def test_overfit_two_sentences_and_round_trips(tmp_path):
    nlp = make_nlp()
    examples = make_examples(nlp, TWO)
    train_until_exact(nlp, examples)
    texts = [text for text, _ in TWO]
    assert ents_of(nlp.pipe(texts)) == gold_ents(examples)
    assert gold_ents(examples) == [[(0, 2, "PER"), (4, 5, "LOC"), (6, 8, "ORG")], [(0, 1, "LOC"), (2, 3, "LOC"), (5, 7, "MISC")]]
    scores = nlp.evaluate(examples)
    assert scores["ents_f"] == 1.0
    all_texts = texts + UNSEEN

    # disk
    nlp.to_disk(tmp_path / "pipe")
    loaded = spacy.load(tmp_path / "pipe")
    assert loaded.get_pipe("ldnet_ner").labels == nlp.get_pipe("ldnet_ner").labels
    assert loaded.get_pipe("ldnet_ner").cfg == nlp.get_pipe("ldnet_ner").cfg
    _assert_same_predictions(nlp, loaded, all_texts)

    # bytes, into a fresh blank pipeline with the same config
    fresh = spacy.blank("en")
    fresh.add_pipe("ldnet_ner", config={"model": tiny_model_config()})
    fresh.from_bytes(nlp.to_bytes())
    _assert_same_predictions(nlp, fresh, all_texts)

    # component bytes alone (they carry the vocab and its vectors too)
    fresh2 = spacy.blank("en")
    fresh2.add_pipe("ldnet_ner", config={"model": tiny_model_config()})
    fresh2.get_pipe("ldnet_ner").from_bytes(nlp.get_pipe("ldnet_ner").to_bytes())
    _assert_same_predictions(nlp, fresh2, all_texts)


def test_untrained_pipelines_differ():
    """Counter-check for the round trips: two differently seeded models do
    not produce the same emissions, so equality above means something."""
    nlps = []
    for seed in (0, 1):
        nlp = make_nlp()
        fix_random_seed(seed)
        nlp.initialize(lambda: make_examples(nlp))
        nlps.append(nlp)
    a, b = (_emissions(n, UNSEEN)[0] for n in nlps)
    assert not numpy.allclose(a, b, atol=1e-4)


def test_labels_from_examples_and_tag_names():
    nlp = make_nlp()
    nlp.initialize(lambda: make_examples(nlp))
    pipe = nlp.get_pipe("ldnet_ner")
    assert pipe.labels == ("LOC", "MISC", "ORG", "PER")
    assert pipe.tag_names[0] == "O" and len(pipe.tag_names) == 1 + 4 * 4
    assert set(pipe.tag_names) == {"O"} | {f"{p}-{l}" for p in "BILU" for l in pipe.labels}


def test_labels_given_to_initialize():
    nlp = make_nlp()
    pipe = nlp.get_pipe("ldnet_ner")
    pipe.initialize(lambda: make_examples(nlp), nlp=nlp, labels=["PER", "GPE"])
    assert pipe.labels == ("PER", "GPE")
    # and through [initialize.components], as 'spacy init labels' output is passed
    nlp = make_nlp()
    nlp.config["initialize"]["components"]["ldnet_ner"] = {"labels": ["ORG"]}
    nlp.initialize(lambda: make_examples(nlp))
    assert nlp.get_pipe("ldnet_ner").labels == ("ORG",)


def test_no_entities_raises():
    nlp = make_nlp()
    examples = make_examples(nlp, [("Nothing here .", [])])
    with pytest.raises(ValueError, match="no entity labels"):
        nlp.initialize(lambda: examples)


# ---------------------------------------------------------------------- errors
def test_use_before_initialize_raises():
    nlp = make_nlp()
    for call in (lambda: nlp("John lives in Paris ."), lambda: list(nlp.pipe(["a b", "c"]))):
        with pytest.raises(ValueError) as err:
            call()
        assert "initialize" in str(err.value)
    with pytest.raises(ValueError, match="initialize"):
        nlp.get_pipe("ldnet_ner").predict([nlp.make_doc("x")])


def test_add_label_after_initialize_raises():
    nlp = make_nlp()
    nlp.initialize(lambda: make_examples(nlp))
    pipe = nlp.get_pipe("ldnet_ner")
    assert pipe.add_label("PER") == 0  # already there: fine
    with pytest.raises(ValueError) as err:
        pipe.add_label("GPE")
    assert "GPE" in str(err.value) and "initialize" in str(err.value)
    assert "GPE" not in pipe.labels


def test_add_label_before_initialize():
    nlp = make_nlp()
    pipe = nlp.get_pipe("ldnet_ner")
    assert pipe.add_label("PER") == 1
    assert pipe.add_label("PER") == 0
    with pytest.raises(ValueError):
        pipe.add_label("")


@pytest.mark.parametrize("how", ["truncate", "empty", "garbage"])
def test_corrupt_weights_raise_clearly(trained_pipeline_path, tmp_path, how):
    path = tmp_path / "pipe"
    shutil.copytree(trained_pipeline_path, path)
    weights = path / "ldnet_ner" / "model"
    data = weights.read_bytes()
    assert len(data) > 100
    if how == "truncate":
        weights.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        weights.write_bytes(b"")
    else:
        weights.write_bytes(b"\x93NUMPY not msgpack" * 10)
    with pytest.raises(ValueError) as err:
        spacy.load(path)
    msg = str(err.value)
    assert "ldnet_ner" in msg and str(weights) in msg


def test_weights_for_another_config_raise_clearly(trained_pipeline_path, tmp_path):
    """Weights saved with hidden_width 16 loaded into a hidden_width 24 model."""
    path = tmp_path / "pipe"
    shutil.copytree(trained_pipeline_path, path)
    cfg = path / "config.cfg"
    text = cfg.read_text(encoding="utf8")
    assert "hidden_width = 16" in text
    cfg.write_text(text.replace("hidden_width = 16", "hidden_width = 24", 1), encoding="utf8")
    with pytest.raises(ValueError, match="ldnet_ner"):
        spacy.load(path)


# ------------------------------------------------------------------------ loss
def test_loss_and_gradient():
    nlp = make_nlp()
    examples = make_examples(nlp)
    nlp.initialize(lambda: examples)
    pipe = nlp.get_pipe("ldnet_ner")
    docs = [eg.predicted for eg in examples]
    scores = pipe.model.predict(docs)
    loss, d_scores = pipe.get_loss(examples, scores)
    assert numpy.isfinite(loss) and loss > 0
    assert [d.shape for d in d_scores] == [s.shape for s in scores]
    assert all(numpy.isfinite(d).all() for d in d_scores)
    assert any(numpy.abs(d).sum() > 0 for d in d_scores)


def test_loss_skips_unannotated_examples():
    """An example without NER annotation contributes no loss and no gradient."""
    nlp = make_nlp()
    examples = make_examples(nlp)
    nlp.initialize(lambda: examples)
    pipe = nlp.get_pipe("ldnet_ner")
    doc = nlp.make_doc("John Smith flew to Paris .")
    unannotated = Example(doc, nlp.make_doc(doc.text))
    partial = Example.from_dict(nlp.make_doc(doc.text), {"entities": ["U-PER", "-", "O", "O", "U-LOC", "O"]})
    scores = pipe.model.predict([unannotated.predicted, partial.predicted])
    loss, d_scores = pipe.get_loss([unannotated, partial], scores)
    assert loss == 0.0
    assert all(not numpy.abs(d).any() for d in d_scores)
    # the same doc with full annotation does give a loss
    full = Example.from_dict(nlp.make_doc(doc.text), {"entities": ["B-PER", "L-PER", "O", "O", "U-LOC", "O"]})
    loss_full, _ = pipe.get_loss([full], pipe.model.predict([full.predicted]))
    assert loss_full > 0


def test_update_reduces_loss():
    nlp = make_nlp()
    examples = make_examples(nlp)
    optimizer = nlp.initialize(lambda: examples, sgd=Adam(0.01))
    losses = []
    for _ in range(10):
        out = nlp.update(examples, sgd=optimizer, drop=0.0, losses={})
        losses.append(out["ldnet_ner"])
    assert all(numpy.isfinite(losses))
    assert losses[-1] < losses[0] * 0.8


def test_use_params_swaps_in_averaged_torch_weights(tmp_path):
    """With ``use_averages`` (thinc's Adam default), ``nlp.use_params(optimizer.averages)``
    must evaluate and save the averaged torch weights, then restore the live ones."""
    from spacy_ldnet.ner.model import get_head

    nlp = make_nlp()
    examples = make_examples(nlp, TWO)
    nlp.initialize(lambda: examples)
    optimizer = Adam(0.01, use_averages=True)
    for _ in range(4):
        nlp.update(examples, sgd=optimizer)
    head = get_head(nlp.get_pipe("ldnet_ner").model)
    shim_id = nlp.get_pipe("ldnet_ner").model.get_ref("head").shims[0].id
    live = head.emission.weight.detach().clone()
    average = numpy.asarray(optimizer.averages[(shim_id, "emission.weight")])
    assert not numpy.allclose(live.numpy(), average)
    texts = UNSEEN
    live_scores = _emissions(nlp, texts)
    with nlp.use_params(optimizer.averages):
        numpy.testing.assert_allclose(head.emission.weight.detach().numpy(), average, atol=1e-7)
        averaged_scores = _emissions(nlp, texts)
        nlp.to_disk(tmp_path / "averaged")
    assert torch_equal(head.emission.weight, live)
    assert any(not numpy.allclose(a, b) for a, b in zip(live_scores, averaged_scores))
    loaded = spacy.load(tmp_path / "averaged")
    for a, b in zip(_emissions(loaded, texts), averaged_scores):
        numpy.testing.assert_allclose(a, b, atol=1e-6)


def test_use_params_rejects_averages_of_another_shape():
    from spacy_ldnet.ner.model import get_head

    nlp = make_nlp()
    examples = make_examples(nlp, TWO)
    nlp.initialize(lambda: examples)
    model = nlp.get_pipe("ldnet_ner").model
    shim_id = model.get_ref("head").shims[0].id
    live = get_head(model).emission.weight.detach().clone()
    bad = {(shim_id, "emission.weight"): numpy.zeros((3, 3), dtype="float32")}
    with pytest.raises(ValueError, match="emission.weight"):
        with nlp.use_params(bad):
            pass
    assert torch_equal(get_head(model).emission.weight, live)


def torch_equal(param, value) -> bool:
    return bool((param.detach() == value).all())


# ------------------------------------------------------------- the data path
def count_cuts(monkeypatch) -> list:
    """Spy on the one cut of a batch (``Sequences.from_docs``): returns the list of batch sizes it was called with."""
    from spacy_ldnet.sequences import Sequences

    calls = []
    cut = Sequences.from_docs.__func__

    def spy(cls, docs, max_length):
        docs = list(docs)
        calls.append(len(docs))
        return cut(cls, docs, max_length)

    monkeypatch.setattr(Sequences, "from_docs", classmethod(spy))
    return calls


def test_the_batch_is_cut_once_per_predict_and_once_per_update(monkeypatch):
    nlp = make_nlp()
    examples = make_examples(nlp)
    optimizer = nlp.initialize(lambda: examples, sgd=Adam(0.01))
    pipe = nlp.get_pipe("ldnet_ner")
    docs = [nlp.make_doc(text) for text, _ in TRAIN_DATA]
    calls = count_cuts(monkeypatch)
    tags = pipe.predict(docs)
    assert calls == [len(docs)]
    assert [len(t.tag_ids) for t in tags] == [len(d) for d in docs]
    calls.clear()
    nlp.update(examples, sgd=optimizer, drop=0.1)
    assert calls == [len(examples)]
    calls.clear()
    list(nlp.pipe([text for text, _ in TRAIN_DATA], batch_size=2))
    assert calls == [2, 2, 1]


def test_update_equals_begin_update_and_get_loss():
    """``update`` reads the padded batch directly; spaCy's own path (per-doc
    scores, ``get_loss``, backprop) gives the same loss and the same weights."""
    results = []
    for own in (True, False):
        fix_random_seed(0)  # the torch weights are drawn when the pipe is added
        nlp = make_nlp()
        examples = make_examples(nlp)
        nlp.initialize(lambda: examples)
        pipe = nlp.get_pipe("ldnet_ner")
        optimizer = Adam(0.01)
        if own:
            loss = pipe.update(examples, sgd=optimizer)["ldnet_ner"]
        else:
            scores, backprop = pipe.model.begin_update([eg.predicted for eg in examples])
            loss, d_scores = pipe.get_loss(examples, scores)
            backprop(d_scores)
            pipe.finish_update(optimizer)
        results.append((loss, _emissions(nlp, UNSEEN)))
    (loss_a, after_a), (loss_b, after_b) = results
    assert loss_a == pytest.approx(loss_b, rel=1e-5)
    for a, b in zip(after_a, after_b):
        numpy.testing.assert_allclose(a, b, atol=1e-5)


def test_max_sequence_length_is_one_setting():
    """Configs saved before it had one place give it in the tagger and the
    embedder: equal values load, different ones are refused with both values."""
    from conftest import TINY_EMBEDDER

    make_nlp(tiny_model_config(max_sequence_length=7, tok2vec=dict(TINY_EMBEDDER, max_sequence_length=None)))
    make_nlp(tiny_model_config(max_sequence_length=7, tok2vec=dict(TINY_EMBEDDER, max_sequence_length=7)))
    with pytest.raises(ValueError) as err:
        make_nlp(tiny_model_config(max_sequence_length=32, tok2vec=dict(TINY_EMBEDDER, max_sequence_length=16)))
    msg = str(err.value)
    assert "32" in msg and "16" in msg and "Fix" in msg and "tok2vec" in msg
    with pytest.raises(ValueError, match="max_sequence_length"):
        make_nlp(tiny_model_config(max_sequence_length=0))


def test_max_sequence_length_of_the_tagger_cuts_every_layer():
    """With windows of 3 tokens, a 7-token doc is tagged as its windows would be alone."""
    from conftest import TINY_EMBEDDER
    from spacy.tokens import Doc

    nlp = make_nlp(tiny_model_config(max_sequence_length=3, tok2vec=dict(TINY_EMBEDDER, max_sequence_length=None)))
    nlp.initialize(lambda: make_examples(nlp))
    model = nlp.get_pipe("ldnet_ner").model
    words = "Mary Smith flew to London with Google".split()
    whole = model.predict([Doc(nlp.vocab, words=words)])[0]
    parts = model.predict([Doc(nlp.vocab, words=words[i : i + 3]) for i in (0, 3, 6)])
    numpy.testing.assert_allclose(whole, numpy.concatenate(parts), atol=1e-6)
