"""Entity confidence of an ``ldnet_ner`` pipeline on a test set, and its cost.

For the Viterbi spans of TEST (a ``.spacy`` file or folder with gold entities,
or gold ``spans[spans_key]`` in spans mode), scored at the component's
temperature (:mod:`spacy_ldnet.ner.confidence`):

* precision, recall and F1 of the spans whose probability is at least each
  threshold (0.0 = every Viterbi span, then 0.5, 0.7, 0.9); a span is correct
  when its start and end characters and its label match a gold span, recall is
  over all gold spans;
* the precision-recall curve over thresholds 0.00, 0.01, .., 1.00;
* expected calibration error (15 equal-width bins) and the reliability bins;
* words/s of ``nlp.pipe`` over TEST's texts with scores on (``scores_key`` set)
  and off (``scores_key = null``, no threshold, no candidates), the two
  pipelines alternating in the same run, best of ``--repeats``, per wall-clock
  and per CPU second; the texts are repeated until at least ``--min-words``
  words are timed.

Writes ``confidence.json`` and ``precision_recall.png`` (needs matplotlib) to
``--output-dir``.

Usage::

    python benchmarks/confidence.py training/conll03/model-best corpus/conll03/test.spacy \\
        --output-dir benchmarks/results/confidence
"""
import argparse
import json
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy

THRESHOLDS = (0.0, 0.5, 0.7, 0.9)


def precision_recall(probs: numpy.ndarray, correct: numpy.ndarray, n_gold: int, threshold: float) -> Dict:
    """P/R/F1 of the spans with probability >= threshold (0.0 where undefined,
    as spaCy's scorer; ``n_predicted`` says when no span is kept)."""
    kept = probs >= threshold
    tp = int((kept & correct).sum())
    p = tp / int(kept.sum()) if kept.any() else 0.0
    r = tp / n_gold if n_gold else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"threshold": threshold, "n_predicted": int(kept.sum()), "n_correct": tp, "n_gold": n_gold,
            "precision": p, "recall": r, "f1": f}


def words_per_second(pipelines: Dict[str, object], texts: List[str], repeats: int) -> Dict[str, Dict[str, float]]:
    """Best-of-``repeats`` words/s of ``nlp.pipe(texts)`` per pipeline, alternating:
    per wall-clock second (``time.perf_counter``) and per CPU second of this
    process (``time.process_time``, less disturbed by other processes)."""
    n_words = sum(len(doc) for doc in next(iter(pipelines.values())).tokenizer.pipe(texts))
    best = {"wall": {name: 0.0 for name in pipelines}, "cpu": {name: 0.0 for name in pipelines}}
    for _ in range(repeats):
        for name, nlp in pipelines.items():
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in nlp.pipe(texts):
                pass
            best["wall"][name] = max(best["wall"][name], n_words / (time.perf_counter() - wall))
            best["cpu"][name] = max(best["cpu"][name], n_words / max(time.process_time() - cpu, 1e-9))
    return best


def plot(curve: Dict, rows: List[Dict], path: Path) -> Optional[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    kept = [i for i, n in enumerate(curve["n_predicted"]) if n]  # precision needs a kept span
    ax.plot([curve["recall"][i] for i in kept], [curve["precision"][i] for i in kept], "-", color="tab:blue",
            label="thresholds 0.00 .. 1.00")
    for row in rows:
        ax.plot(row["recall"], row["precision"], "o", label=f"threshold {row['threshold']:.1f}: F1 {row['f1']:.3f}")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: Optional[List[str]] = None) -> Dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pipeline", type=Path)
    parser.add_argument("test", type=Path, help=".spacy file or folder with gold annotation")
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--component", default=None, help="the ldnet_ner component (if there are several)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--min-words", type=int, default=20000)
    args = parser.parse_args(argv)

    import spacy
    from spacy.training import Corpus

    from spacy_ldnet.ner.calibration import collect_forecasts, expected_calibration_error, reliability_bins
    from spacy_ldnet.prune.report import machine_info

    nlp = spacy.load(args.pipeline)
    names = [n for n in nlp.pipe_names if nlp.get_pipe_meta(n).factory == "ldnet_ner"]
    name = args.component or (names[0] if len(names) == 1 else None)
    if name not in names:
        parser.error(f"pick the ldnet_ner component with --component (found: {names})")
    pipe = nlp.get_pipe(name)
    examples = list(Corpus(args.test)(nlp))
    forecasts = collect_forecasts(nlp, name, examples, args.batch_size)
    probs, correct = forecasts.probabilities(pipe.temperature), forecasts.correct
    n_gold = sum(len(eg.reference.ents if pipe.spans_key is None else eg.reference.spans.get(pipe.spans_key, []))
                 for eg in examples)
    rows = [precision_recall(probs, correct, n_gold, t) for t in THRESHOLDS]
    grid = [precision_recall(probs, correct, n_gold, float(t)) for t in numpy.round(numpy.linspace(0, 1, 101), 2)]
    curve = {key: [row[key] for row in grid] for key in ("threshold", "n_predicted", "precision", "recall", "f1")}

    texts = [eg.reference.text for eg in examples]
    n_words = max(1, sum(len(eg.predicted) for eg in examples))
    texts = texts * max(1, -(-args.min_words // n_words))
    settings = {"scores_on": {"scores_key": pipe.scores_key or "ldnet_ner_scores"},
                "scores_off": {"scores_key": None, "threshold": 0.0, "candidates_threshold": None}}
    pipelines = {key: spacy.load(args.pipeline, config={"components": {name: value}}) for key, value in settings.items()}
    speed = words_per_second(pipelines, texts, args.repeats)

    result = {
        "pipeline": str(args.pipeline), "test": str(args.test), "component": name,
        "temperature": pipe.temperature, "n_docs": len(examples), "n_spans": int(len(correct)), "n_gold": n_gold,
        "thresholds": rows, "pr_curve": curve,
        "ece": expected_calibration_error(probs, correct) if len(probs) else None,
        "reliability_bins": reliability_bins(probs, correct),
        "speed": {"words_per_second": speed["wall"], "words_per_cpu_second": speed["cpu"],
                  "relative_cost_of_scores": {k: 1.0 - v["scores_on"] / v["scores_off"] for k, v in speed.items()},
                  "n_words_timed": sum(len(d) for d in nlp.tokenizer.pipe(texts)), "repeats": args.repeats,
                  "machine": machine_info()},
    }
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "confidence.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf8")
    plot(curve, rows, args.output_dir / "precision_recall.png")
    for row in rows:
        print(f"threshold {row['threshold']:.1f}: P {row['precision']:.4f} R {row['recall']:.4f} F1 {row['f1']:.4f} "
              f"({row['n_predicted']} spans)")
    print(f"ECE {result['ece']}; words/s scores on {speed['wall']['scores_on']:.0f}, off {speed['wall']['scores_off']:.0f}; "
          f"words per CPU second on {speed['cpu']['scores_on']:.0f}, off {speed['cpu']['scores_off']:.0f}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
