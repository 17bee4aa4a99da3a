"""Print the project's figures and annotate a few example sentences.

Usage: python project/report.py PIPELINE METRICS_PREFIX
Reads METRICS_PREFIX.dev.json, .test.json (spacy evaluate) and .speed.json
(project/benchmark_speed.py).
"""
import json
import sys
from pathlib import Path

EXAMPLES = [
    "Angela Merkel met Emmanuel Macron in Paris on Tuesday to discuss the European Union budget .",
    "Shares of Apple Inc. rose 3 percent on the Nasdaq after Tim Cook spoke in Cupertino .",
    "Manchester United beat Bayern Munich 2-1 in the Champions League final in Barcelona .",
]


def main(pipeline: str, prefix: str) -> int:
    import spacy

    rows = []
    for split in ("dev", "test"):
        path = Path(f"{prefix}.{split}.json")
        m = json.loads(path.read_text())
        rows.append((split, 100 * m["ents_p"], 100 * m["ents_r"], 100 * m["ents_f"], m.get("speed")))
    speed = json.loads(Path(f"{prefix}.speed.json").read_text())
    print(f"\nPipeline: {pipeline}")
    print(f"{'split':<6} {'P':>7} {'R':>7} {'F1':>7}")
    for split, p, r, f, _ in rows:
        print(f"{split:<6} {p:7.2f} {r:7.2f} {f:7.2f}")
    print(
        f"\nspacy benchmark speed (test set): {speed['words_per_second']:,.0f} words/s "
        f"(95% CI {speed['ci95_low']:,.0f}-{speed['ci95_high']:,.0f}), "
        f"{speed['torch_threads']} torch thread(s), {speed['cpu_count']} CPU cores\n"
    )
    nlp = spacy.load(pipeline)
    for doc in nlp.pipe(EXAMPLES):
        print(doc.text)
        print("   ", [(e.text, e.label_) for e in doc.ents])
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
