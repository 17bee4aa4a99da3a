"""Print the project's figures and annotate a few example sentences.

Usage: python project/report.py PIPELINE [--metrics metrics]

Prints, for every pipeline with metrics in the metrics folder, dev/test
P/R/F1 (``NAME.dev.json``/``NAME.test.json`` from ``spacy evaluate``) and
words/s (``NAME.speed.json`` from project/benchmark_speed.py), then each
pruning summary (``NAME.prune.json`` from ``spacy-ldnet prune``), then
annotates example sentences with PIPELINE.
"""
import argparse
import json
import sys
from pathlib import Path

from seeds import SCORE_PREFIXES  # project/seeds.py; the script folder is on sys.path

EXAMPLES = [
    "Angela Merkel met Emmanuel Macron in Paris on Tuesday to discuss the European Union budget .",
    "Shares of Apple Inc. rose 3 percent on the Nasdaq after Tim Cook spoke in Cupertino .",
    "Manchester United beat Bayern Munich 2-1 in the Champions League final in Barcelona .",
]


def _prf(m: dict):
    for prefix in SCORE_PREFIXES:
        if f"{prefix}_f" in m:
            return 100 * m[f"{prefix}_p"], 100 * m[f"{prefix}_r"], 100 * m[f"{prefix}_f"]
    return None


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("pipeline")
    p.add_argument("--metrics", default="metrics")
    args = p.parse_args()
    metrics = Path(args.metrics)
    names = sorted({f.name.split(".")[0] for f in metrics.glob("*.test.json")})
    print(f"\n{'pipeline':<26} {'dev P':>6} {'dev R':>6} {'dev F1':>6}   {'test P':>6} {'test R':>6} {'test F1':>7}   {'words/s':>8}")
    for name in names:
        row = []
        for split in ("dev", "test"):
            f = metrics / f"{name}.{split}.json"
            prf = _prf(json.loads(f.read_text())) if f.is_file() else None
            row.append("   ".join(f"{x:6.2f}" for x in prf) if prf else "     -      -      -")
        speed = metrics / f"{name}.speed.json"
        wps = f"{json.loads(speed.read_text())['words_per_second']:8,.0f}" if speed.is_file() else "       -"
        print(f"{name:<26} {row[0].replace('   ', ' ')}   {row[1].replace('   ', ' ')}   {wps}")
    for f in sorted(metrics.glob("*.prune.json")):
        r = json.loads(f.read_text())
        ma, wps = r["lm_multiply_adds_per_token"], r["words_per_second"]
        print(f"\nPruning {f.name}: kept forward layers {r['kept_layers']['forward']}, backward {r['kept_layers']['backward']}")
        print(f"  LM multiply-adds/token {ma['before']:,} -> {ma['after']:,} ({100 * ma['ratio']:.1f}%)")
        print(f"  LM LSTM parameters {r['lm_parameters']['before']:,} -> {r['lm_parameters']['after']:,}")
        print(f"  dev {r['score']} {100 * r['dev_f1']['before']:.2f} -> {100 * r['dev_f1']['after']:.2f}; "
              f"test {100 * r['test_f1']['before']:.2f} -> {100 * r['test_f1']['after']:.2f}")
        print(f"  words/s (nlp.pipe, batch 128) {wps['before']:,.0f} -> {wps['after']:,.0f} ({wps['ratio']:.1f}x)")
    speed_files = list(metrics.glob("*.speed.json"))
    if speed_files:
        s = json.loads(speed_files[0].read_text())
        print(f"\nwords/s: spacy benchmark speed on the test set, {s['torch_threads']} torch thread(s), {s['cpu_count']} CPU cores")
    import spacy

    print(f"\nExamples ({args.pipeline}):")
    nlp = spacy.load(args.pipeline)
    for doc in nlp.pipe(EXAMPLES):
        print(doc.text)
        print("   ", [(e.text, e.label_) for e in doc.ents])
    return 0


if __name__ == "__main__":
    sys.exit(main())
