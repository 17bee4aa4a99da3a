"""``spacy-ldnet calibrate``: temperature scaling of the span probabilities, ECE,
and ``benchmarks/confidence.py`` on the session's tiny trained pipeline."""
import json
import math

import numpy
import pytest
import spacy
from spacy.tokens import DocBin
from spacy.util import load_config
from typer.testing import CliRunner

from conftest import REPO, TRAIN_DATA, ents_of, load_script
from spacy_ldnet.cli import app
from spacy_ldnet.ner.calibration import expected_calibration_error, fit_temperature, reliability_bins

#: Training sentences (predicted right) and new ones (partly wrong): both outcomes occur.
DEV_DATA = TRAIN_DATA + [
    ("Peter Brown visited Berlin with Siemens .", [(0, 11, "PER"), (20, 26, "LOC"), (32, 39, "ORG")]),
    ("Anna Lee flew to Rome with Google .", [(0, 8, "PER"), (17, 21, "LOC"), (27, 33, "ORG")]),
    ("The World Cup started in Germany .", [(4, 13, "MISC"), (25, 32, "LOC")]),
    ("Google hired Mary Smith in Italy .", [(0, 6, "ORG"), (13, 23, "PER"), (27, 32, "LOC")]),
    ("France beat Jones yesterday .", [(0, 6, "LOC"), (12, 17, "PER")]),
    # A training text with one label changed: the overfit pipeline predicts the
    # training label (PER) here, so the dev set always holds a wrong span and
    # has a best temperature, whatever the float rounding of a training run.
    ("John Smith flew to Paris with Air France .", [(0, 10, "ORG"), (19, 24, "LOC"), (30, 40, "ORG")]),
]


def write_docs(path, data):
    nlp = spacy.blank("en")
    docs = []
    for text, ents in data:
        doc = nlp.make_doc(text)
        doc.ents = [doc.char_span(s, e, label=label) for s, e, label in ents]
        docs.append(doc)
    DocBin(docs=docs).to_disk(path)
    return path


def invoke(*args):
    result = CliRunner().invoke(app, ["calibrate", *map(str, args)])
    return result, " ".join((result.output or "").split())


def test_ece_of_a_known_case_and_bins():
    probs = numpy.array([0.1, 0.1, 0.9, 0.9, 1.0])
    correct = numpy.array([False, True, True, True, True])
    # bin 1: confidence 0.1, accuracy 0.5; bin 13: 0.9 vs 1; bin 14 (1.0 included): 1.0 vs 1
    assert expected_calibration_error(probs, correct) == pytest.approx((2 * 0.4 + 2 * 0.1) / 5)
    bins = reliability_bins(probs, correct)
    assert len(bins) == 15 and [b["count"] for b in bins if b["count"]] == [2, 2, 1]
    assert expected_calibration_error(numpy.array([0.7] * 10), numpy.arange(10) < 7) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="forecasts"):
        expected_calibration_error(numpy.zeros(0), numpy.zeros(0, dtype=bool))


@pytest.mark.parametrize("best", [0.3, 1.0, 2.7, 15.0])
def test_fit_temperature_finds_the_minimum(best):
    found = fit_temperature(lambda t: (math.log(t) - math.log(best)) ** 2 + 1.0)
    assert found == pytest.approx(best, rel=1e-4)
    # at a bound when the minimum lies outside the range
    assert fit_temperature(lambda t: t) == pytest.approx(0.05, rel=1e-3)


def test_calibrate_writes_a_pipeline_with_the_fitted_temperature(trained_pipeline_path, tmp_path):
    dev = write_docs(tmp_path / "dev.spacy", DEV_DATA)
    out = tmp_path / "calibrated"
    result, text = invoke(trained_pipeline_path, dev, out)
    assert result.exit_code == 0, text
    report = json.loads((out / "calibration.json").read_text(encoding="utf8"))
    fitted = report["temperature"]["after"]
    assert report["temperature"]["before"] == 1.0 and fitted != 1.0 and 0.05 <= fitted <= 20.0
    assert load_config(out / "config.cfg")["components"]["ldnet_ner"]["temperature"] == pytest.approx(fitted)
    assert 0 < report["n_correct"] < report["n_spans"]
    assert report["after"]["nll"] <= report["before"]["nll"]
    assert sum(b["count"] for b in report["after"]["bins"]) == report["n_spans"] and len(report["after"]["bins"]) == 15
    assert (out / "reliability.png").stat().st_size > 1000
    assert f"ECE {report['before']['ece']:.4f} -> {report['after']['ece']:.4f}" in text

    calibrated, original = spacy.load(out), spacy.load(trained_pipeline_path)
    assert calibrated.get_pipe("ldnet_ner").temperature == pytest.approx(fitted)
    texts = [t for t, _ in DEV_DATA]
    docs = list(calibrated.pipe(texts))
    assert ents_of(docs) == ents_of(original.pipe(texts))  # the spans do not move, only their probabilities
    # the report's ECE after is the ECE of the scores the calibrated pipeline writes
    gold = [{(s, e, label) for s, e, label in ents} for _, ents in DEV_DATA]
    probs, correct = [], []
    for doc, want in zip(docs, gold):
        group = doc.spans["ldnet_ner_scores"]
        probs += list(group.attrs["scores"])
        correct += [(s.start_char, s.end_char, s.label_) in want for s in group]
    assert len(probs) == report["n_spans"]
    assert expected_calibration_error(numpy.array(probs), numpy.array(correct)) == pytest.approx(report["after"]["ece"], abs=1e-5)


def test_calibrate_bad_inputs_give_one_line_errors(trained_pipeline_path, tmp_path):
    dev = write_docs(tmp_path / "dev.spacy", DEV_DATA)
    train_only = write_docs(tmp_path / "train.spacy", TRAIN_DATA)
    empty = write_docs(tmp_path / "empty.spacy", [("", [])])
    text_file = tmp_path / "dev.txt"
    text_file.write_text("not data\n", encoding="utf8")
    garbage = tmp_path / "garbage.spacy"
    garbage.write_bytes(b"\x00not a docbin")
    out = tmp_path / "out"
    cases = [
        ((tmp_path / "missing", dev, out), str(tmp_path / "missing")),
        ((tmp_path, dev, out), "no config.cfg"),
        ((trained_pipeline_path, tmp_path / "nodev.spacy", out), "nodev.spacy"),
        ((trained_pipeline_path, text_file, out), "not a .spacy file"),
        ((trained_pipeline_path, garbage, out), "could not be read"),
        ((trained_pipeline_path, dev, trained_pipeline_path / "sub"), "inside PIPELINE"),
        ((trained_pipeline_path, dev, text_file), "is a file"),
        ((trained_pipeline_path, dev, out, "--component", "nope"), "--component nope"),
        ((trained_pipeline_path, dev, out, "--batch-size", "0"), "--batch-size 0"),
        ((trained_pipeline_path, empty, out), "predicts no span"),
        ((trained_pipeline_path, train_only, out), "are correct"),
    ]
    for args, named in cases:
        result, text = invoke(*args)
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit), (args, text, result.exception)
        assert text.startswith("Error: ") and named in text and "Traceback" not in text, (args, text)
    assert not out.exists()


def test_confidence_benchmark_reports_thresholds_and_speed(trained_pipeline_path, tmp_path):
    bench = load_script(REPO / "benchmarks" / "confidence.py", "confidence_benchmark")
    test = write_docs(tmp_path / "test.spacy", DEV_DATA)
    result = bench.main([str(trained_pipeline_path), str(test), "--output-dir", str(tmp_path / "bench"), "--repeats", "1", "--min-words", "3000"])
    saved = json.loads((tmp_path / "bench" / "confidence.json").read_text(encoding="utf8"))
    assert saved == json.loads(json.dumps(result))
    rows = {row["threshold"]: row for row in saved["thresholds"]}
    assert set(rows) == {0.0, 0.5, 0.7, 0.9}
    n_gold = sum(len(ents) for _, ents in DEV_DATA)
    for row in rows.values():
        assert row["n_gold"] == n_gold and 0 <= row["precision"] <= 1 and 0 <= row["recall"] <= 1
    assert rows[0.9]["n_predicted"] <= rows[0.5]["n_predicted"] <= rows[0.0]["n_predicted"]
    assert rows[0.9]["recall"] <= rows[0.0]["recall"]
    curve = saved["pr_curve"]
    assert curve["threshold"] == sorted(curve["threshold"]) and len(curve["precision"]) == len(curve["threshold"])
    for per in ("words_per_second", "words_per_cpu_second"):
        assert saved["speed"][per]["scores_on"] > 0 and saved["speed"][per]["scores_off"] > 0
    assert (tmp_path / "bench" / "precision_recall.png").stat().st_size > 1000
