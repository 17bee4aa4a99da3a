"""benchmarks/peers.py: the worker's measurements, ratios within rounds, the table and plot."""
import json
from pathlib import Path

import pytest
import spacy
from conftest import load_script, make_examples
from spacy.tokens import DocBin

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "peers.py"


def _script():
    return load_script(SCRIPT, "peers")


def _round(a, b):
    return {"load_s": 1.0, "peak_rss_mb": 100.0, "words_per_second": a}, {"load_s": 2.0, "peak_rss_mb": 300.0, "words_per_second": b}


def test_ratios_are_taken_within_each_round_then_the_median():
    script = _script()
    pipelines = [("ref", "a"), ("ours", "b")]
    rounds = []
    # the machine slows down in round 2: the per-round ratio stays 0.5, the medians of words/s do not
    for a, b in [(100.0, 50.0), (40.0, 20.0), (90.0, 45.0)]:
        ra, rb = _round(a, b)
        rounds.append({regime: {"ref": ra, "ours": rb} for regime in script.REGIMES})
    evaluations = {n: {"ents_f": 90.0, "ents_p": 90.0, "ents_r": 90.0, "load_s": 3.0, "peak_rss_mb": 500.0} for n, _ in pipelines}
    rows = script.summarise(pipelines, rounds, evaluations)
    ours = rows[1]
    assert ours["docs_ratio"] == pytest.approx(0.5) and ours["sentences_ratio"] == pytest.approx(0.5)
    assert ours["docs_words_per_second"] == 45.0
    assert ours["load_s"] == 2.0 and ours["peak_rss_mb"] == 500.0
    md = script.table(rows, "ref")
    assert "| ours | 90.00 | 45 | 0.50 |" in md


def test_worker_measures_a_pipeline_in_both_regimes_and_evaluates_it(trained_pipeline_path, tmp_path):
    script = _script()
    nlp = spacy.load(trained_pipeline_path)
    docs = [eg.reference for eg in make_examples(nlp)]
    for i, token in enumerate(docs[0]):  # two sentences in the first doc, none marked in the others
        token.is_sent_start = i in (0, 3)
    DocBin(docs=docs).to_disk(tmp_path / "test.spacy")
    ev = script.worker(str(trained_pipeline_path), "evaluate", tmp_path / "test.spacy", 4)
    assert 0.0 <= ev["ents_f"] <= 100.0 and ev["load_s"] > 0
    for regime in script.REGIMES:
        out = script.worker(str(trained_pipeline_path), regime, tmp_path / "test.spacy", 4)
        assert out["words"] == sum(len(d) for d in docs)
        assert out["texts"] == (len(docs) if regime == "docs" else len(docs) + 1)
        assert out["words_per_second"] > 0 and out["peak_rss_mb"] > 0
    int8 = script.load(f"{trained_pipeline_path}#int8")
    assert int8.get_pipe("ldnet_ner").precision == "int8"


def test_plot_writes_a_png(tmp_path):
    script = _script()
    row = {"name": "LD-Net pruned", "ents_f": 90.0, "docs_words_per_second": 1e4, "sentences_words_per_second": 8e3}
    peer = {"name": "spaCy CNN", "ents_f": 85.0, "docs_words_per_second": 2e4, "sentences_words_per_second": 2e4}
    script.plot([peer, row], tmp_path / "peers.png", "test")
    assert (tmp_path / "peers.png").stat().st_size > 1000
