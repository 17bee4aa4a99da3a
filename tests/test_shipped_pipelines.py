"""The pipelines that ship with spacy-ldnet (``pipelines/``, installed by
``pip install .``): they load by name, have the labels and settings they were
built with, stay small, and annotate the examples as when they were built
(``tests/fixtures/shipped``, written by ``project/ship_pipeline.py``)."""
import importlib.metadata
import json
from pathlib import Path

import pytest
import spacy

from shipped_examples import EXAMPLES, annotate

from conftest import REPO

SHIPPED = {
    # package: (spans_key, labels, kept LM layers (forward, backward))
    "en_ldnet_conll03": (None, {"PER", "LOC", "ORG", "MISC"}, (0, 4)),
    "en_ldnet_conll00": ("chunks", {"NP", "VP", "PP", "ADVP", "ADJP", "SBAR", "PRT", "CONJP", "INTJ", "LST", "UCP"}, (6, 0)),
}
MAX_MB = 25.0


def data_dir(name: str) -> Path:
    return next((REPO / "pipelines" / name / name).glob(f"{name}-*"))


@pytest.fixture(scope="module", params=sorted(SHIPPED))
def shipped(request):
    name = request.param
    try:
        importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        pytest.fail(f"{name} is not installed. Fix: pip install . (setup.py installs pipelines/{name}).")
    return name, spacy.load(name)


def test_installed_package_is_the_one_in_the_repository(shipped):
    name, nlp = shipped
    assert nlp.meta["name"] == name[len("en_"):]
    assert json.loads((data_dir(name) / "meta.json").read_text())["version"] == nlp.meta["version"]
    built = (data_dir(name) / "ldnet_ner" / "model").read_bytes()
    installed = Path(importlib.import_module(name).__file__).parent
    assert (next(installed.glob(f"{name}-*")) / "ldnet_ner" / "model").read_bytes() == built


def test_labels_and_config(shipped):
    name, nlp = shipped
    spans_key, labels, (forward, backward) = SHIPPED[name]
    assert nlp.pipe_names == ["ldnet_ner"]
    pipe = nlp.get_pipe("ldnet_ner")
    assert set(pipe.labels) <= labels and len(pipe.labels) >= min(4, len(labels))
    assert pipe.spans_key == spans_key
    tok2vec = nlp.config["components"]["ldnet_ner"]["model"]["tok2vec"]
    assert (tok2vec["forward_layers"], tok2vec["backward_layers"]) == (forward, backward)
    assert tok2vec["n_word_rows"] == 0  # the word table lives in nlp.vocab.vectors (trim-vectors)
    summary = json.loads((REPO / "metrics" / "shipped" / f"{name}.json").read_text())
    assert pipe.temperature == pytest.approx(summary["temperature"])


def package_files(name: str):
    """The package's files, without what pip writes beside them when it builds it (build/, *.egg-info/)."""
    root = REPO / "pipelines" / name
    skip = [root / "build", *root.glob("*.egg-info")]
    return [f for f in root.rglob("*") if f.is_file() and not any(d in f.parents for d in skip)]


def test_size(shipped):
    name, _ = shipped
    size = sum(f.stat().st_size for f in package_files(name)) / 1e6
    assert size <= MAX_MB, f"pipelines/{name} is {size:.1f} MB"


def test_no_corpus_file_in_the_package(shipped):
    name, _ = shipped
    files = [p.name for p in package_files(name)]
    assert not [f for f in files if f.endswith((".spacy", ".conll", ".iob")) or f in {"train.txt", "dev.txt", "test.txt"}]


def test_annotates_the_examples_as_when_it_was_built(shipped):
    name, nlp = shipped
    expected = json.loads((REPO / "tests" / "fixtures" / "shipped" / f"{name}.expected.json").read_text())
    got = annotate(nlp, SHIPPED[name][0])
    assert [g["text"] for g in got] == EXAMPLES == [e["text"] for e in expected]
    for g, e in zip(got, expected):
        assert g["spans"] == e["spans"], g["text"]
        assert g["scores"] == pytest.approx(e["scores"], abs=2e-3), g["text"]
    assert sum(len(g["spans"]) for g in got) >= len(EXAMPLES)
