"""precision = "int8": prediction with dynamically quantized LSTMs; weights,
training and saving stay fp32 (spacy_ldnet/precision.py, spacy-ldnet quantize)."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy
import pytest
import spacy
import torch
from spacy.tokens import DocBin

from spacy_ldnet.precision import int8_lstms
from spacy_ldnet.thinc_utils import torch_module

from conftest import REPO, TRAIN_DATA, make_examples, make_nlp

LM_FIXTURE = Path(__file__).parent / "fixtures" / "pipelines_v0" / "ner_lm_pruned_v1"
TEXTS = [text for text, _ in TRAIN_DATA] + ["A much longer text about Paris and London . It has Google , Mary and Jones ."]
INT8 = {"components": {"ldnet_ner": {"precision": "int8"}}}


def marginals(nlp, texts=TEXTS):
    pipe = nlp.get_pipe("ldnet_ner")
    return [numpy.asarray(m) for m in pipe.tag_marginals([nlp.make_doc(t) for t in texts])]


def lstm_types(nlp):
    """The types of the LSTMs in the modules the component's shims hold."""
    return {type(m) for node in nlp.get_pipe("ldnet_ner").model.walk() for shim in node.shims
            for m in shim._model.modules() if type(m).__name__ == "LSTM"}


def test_an_unknown_precision_is_refused_with_the_allowed_values():
    with pytest.raises(ValueError, match="'fp32', 'int8'"):
        make_nlp().add_pipe("ldnet_ner", name="other", config={"precision": "fp16"})


@pytest.mark.parametrize("source", ["lm_fixture", "trained"])
def test_int8_predicts_near_fp32_and_leaves_the_fp32_modules_in_place(source, trained_pipeline_path, tmp_path):
    path = tmp_path / "pipeline"
    shutil.copytree(LM_FIXTURE if source == "lm_fixture" else trained_pipeline_path, path)
    fp32, int8 = spacy.load(path), spacy.load(path, config=INT8)
    a, b = marginals(fp32), marginals(int8)
    diffs = [float(numpy.abs(x - y).max()) for x, y in zip(a, b)]
    assert max(diffs) < 0.05, diffs
    assert max(diffs) > 0.0  # the int8 modules were used
    assert lstm_types(int8) == {torch.nn.LSTM}  # swapped back after predicting
    ents = [[(e.start, e.end, e.label_) for e in doc.ents] for doc in int8.pipe(TEXTS)]
    assert len(ents) == len(TEXTS)


def test_the_int8_pipeline_saves_fp32_weights_and_reloads_as_int8(trained_pipeline_path, tmp_path):
    fp32, int8 = spacy.load(trained_pipeline_path), spacy.load(trained_pipeline_path, config=INT8)
    marginals(int8)  # the int8 copies exist now
    int8.to_disk(tmp_path / "saved")
    again = spacy.load(tmp_path / "saved")
    assert again.get_pipe("ldnet_ner").precision == "int8"
    assert again.get_pipe("ldnet_ner").model.to_bytes() == fp32.get_pipe("ldnet_ner").model.to_bytes()
    for x, y in zip(marginals(again), marginals(int8)):
        numpy.testing.assert_allclose(x, y, atol=1e-6)


def test_the_int8_copies_follow_new_weights(trained_pipeline_path):
    int8 = spacy.load(trained_pipeline_path, config=INT8)
    before = marginals(int8)
    other = spacy.load(trained_pipeline_path)
    head = other.get_pipe("ldnet_ner").model.get_ref("head")
    with torch.no_grad():
        for p in torch_module(head).lstm.parameters():
            p.mul_(-1.0)
    int8.get_pipe("ldnet_ner").from_bytes(other.get_pipe("ldnet_ner").to_bytes())
    after, expected = marginals(int8), marginals(other)
    assert max(float(numpy.abs(x - y).max()) for x, y in zip(after, expected)) < 0.05
    assert max(float(numpy.abs(x - y).max()) for x, y in zip(after, before)) > 0.05


def test_int8_trains_in_fp32_and_predicts_with_the_updated_weights(trained_pipeline_path):
    int8 = spacy.load(trained_pipeline_path, config=INT8)
    marginals(int8)
    optimizer = int8.resume_training()
    losses = int8.update(make_examples(int8), sgd=optimizer, drop=0.0)
    assert losses["ldnet_ner"] > 0.0
    fp32 = spacy.load(trained_pipeline_path)
    fp32.get_pipe("ldnet_ner").from_bytes(int8.get_pipe("ldnet_ner").to_bytes())
    diffs = [float(numpy.abs(x - y).max()) for x, y in zip(marginals(int8), marginals(fp32))]
    assert max(diffs) < 0.05


def test_int8_refuses_weights_off_the_cpu():
    lstm = torch.nn.LSTM(4, 4).to("meta")
    with pytest.raises(ValueError, match="CPU only"):
        int8_lstms(lstm)


def spacy_ldnet_cmd():
    script = REPO / ".venv" / "bin" / "spacy-ldnet"
    return [str(script)] if script.exists() else [sys.executable, "-m", "spacy_ldnet.cli"]


def test_cli_writes_an_int8_pipeline_and_measures_it(trained_pipeline_path, tmp_path):
    nlp = spacy.load(trained_pipeline_path)
    DocBin(docs=[eg.reference for eg in make_examples(nlp)]).to_disk(tmp_path / "dev.spacy")
    out, metrics = tmp_path / "int8", tmp_path / "int8.json"
    proc = subprocess.run(
        [*spacy_ldnet_cmd(), "quantize", str(trained_pipeline_path), str(out), "--data", str(tmp_path / "dev.spacy"),
         "--metrics", str(metrics)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert spacy.load(out).get_pipe("ldnet_ner").precision == "int8"
    figures = json.loads(metrics.read_text())
    assert figures["fp32"]["score_name"] == "ents_f" and figures["int8"]["words_per_second"] > 0
    assert figures["score_difference"] == pytest.approx(figures["int8"]["score"] - figures["fp32"]["score"])
    assert not (tmp_path / "int8.partial").exists()


@pytest.mark.parametrize("args,message", [
    (["OUT", "--metrics", "m.json"], "--metrics needs --data"),
    (["PIPELINE/inside"], "is inside PIPELINE"),
])
def test_cli_refuses_bad_arguments_in_one_line(args, message, trained_pipeline_path, tmp_path):
    args = [a.replace("PIPELINE", str(trained_pipeline_path)).replace("OUT", str(tmp_path / "out")) for a in args]
    proc = subprocess.run([*spacy_ldnet_cmd(), "quantize", str(trained_pipeline_path), *args],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert message in proc.stderr and "Traceback" not in proc.stderr
