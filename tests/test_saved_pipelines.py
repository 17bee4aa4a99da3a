"""Pipelines saved by earlier versions load and predict exactly as they did.

The fixtures under ``tests/fixtures/pipelines_v0`` were written by spacy-ldnet
0.x (see their README); their expected spans and emission scores were recorded
when they were saved.
"""
import json
import shutil
from pathlib import Path

import numpy
import pytest
import spacy

FIXTURES = Path(__file__).parent / "fixtures" / "pipelines_v0"
NAMES = ["ner_charword_v1", "ner_lm_pruned_v1", "chunks_lm_v2"]


@pytest.mark.parametrize("name", NAMES)
def test_saved_pipeline_loads_and_predicts_as_recorded(name, tmp_path):
    path = tmp_path / name
    shutil.copytree(FIXTURES / name, path)  # loading must not need to write next to the fixture
    expected = json.loads((FIXTURES / f"{name}.expected.json").read_text(encoding="utf8"))
    recorded = numpy.load(FIXTURES / f"{name}.emissions.npz", allow_pickle=False)
    nlp = spacy.load(path)
    pipe = nlp.get_pipe("ldnet_ner")
    scores = pipe.model.predict([nlp.make_doc(t) for t in expected["texts"]])
    for i, s in enumerate(scores):
        numpy.testing.assert_allclose(numpy.asarray(s), recorded[f"doc{i}"], rtol=1e-5, atol=1e-5)
    key = expected["spans_key"]
    got = []
    for doc in nlp.pipe(expected["texts"]):
        spans = doc.spans[key] if key else doc.ents
        got.append([[s.start_char, s.end_char, s.label_] for s in spans])
    assert got == expected["spans"]
    # and it saves again and reloads to the same predictions
    nlp.to_disk(tmp_path / "resaved")
    again = spacy.load(tmp_path / "resaved")
    rescored = again.get_pipe("ldnet_ner").model.predict([again.make_doc(t) for t in expected["texts"]])
    for a, b in zip(rescored, scores):
        numpy.testing.assert_allclose(numpy.asarray(a), numpy.asarray(b), rtol=1e-6, atol=1e-6)
