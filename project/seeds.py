"""Average F1 over training seeds, and the gap between two groups of runs.

Usage:
    python project/seeds.py METRICS_DIR --group NAME=RUN[,RUN...] [--group ...]
        [--base NAME]

Each RUN names the files ``METRICS_DIR/RUN.dev.json`` and
``METRICS_DIR/RUN.test.json`` written by ``spacy evaluate --output``. For each
group it prints every run's dev and test F1 (in %, NER ``ents_f`` or chunking
``spans_chunks_f``), their mean and, with two runs or more, the sample
standard deviation. With ``--base NAME`` it also prints each other group's
mean minus the base group's mean (in F1 points).

Exits with status 2 and names the file when a metrics file is missing or has
no F1 in it, or when a group is malformed.
"""
import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Dict, List

# Score prefixes of `spacy evaluate` output: NER (doc.ents), chunking (doc.spans["chunks"]).
SCORE_PREFIXES = ("ents", "spans_chunks")
SCORE_KEYS = tuple(f"{p}_f" for p in SCORE_PREFIXES)


def read_f1(path: Path) -> float:
    """F1 in % from a ``spacy evaluate --output`` JSON file.

    Raises: FileNotFoundError if the file is missing; ValueError if it is not
    JSON or holds none of ``ents_f``/``spans_chunks_f``.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such metrics file. Fix: run `spacy evaluate ... --output {path}` first.")
    try:
        metrics = json.loads(path.read_text(encoding="utf8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not a JSON file ({e}). Fix: rerun `spacy evaluate ... --output {path}`.") from e
    for key in SCORE_KEYS:
        if isinstance(metrics.get(key), (int, float)):
            return 100.0 * metrics[key]
    raise ValueError(f"{path}: none of {', '.join(SCORE_KEYS)} in it; is it a `spacy evaluate` output?")


def parse_group(text: str) -> tuple:
    """``"NAME=RUN1,RUN2"`` -> ``("NAME", ["RUN1", "RUN2"])``; ValueError otherwise."""
    name, sep, runs = text.partition("=")
    run_list = [r.strip() for r in runs.split(",") if r.strip()]
    if not sep or not name.strip() or not run_list:
        raise ValueError(f"--group {text!r}: expected NAME=RUN[,RUN...], e.g. unpruned=conll03_ldnet,exp_ldnet_seed1")
    return name.strip(), run_list


def summarise(metrics_dir: Path, groups: Dict[str, List[str]]) -> Dict[str, Dict[str, List[float]]]:
    """``{group: {"dev": [F1 per run], "test": [F1 per run]}}``, in run order."""
    return {
        name: {split: [read_f1(metrics_dir / f"{run}.{split}.json") for run in runs] for split in ("dev", "test")}
        for name, runs in groups.items()
    }


def _mean_sd(values: List[float]) -> str:
    mean = statistics.fmean(values)
    if len(values) < 2:
        return f"{mean:6.2f}"
    return f"{mean:6.2f} +- {statistics.stdev(values):.2f}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("metrics_dir", type=Path)
    p.add_argument("--group", action="append", required=True, help="NAME=RUN[,RUN...]")
    p.add_argument("--base", default=None, help="the group the others are compared to")
    args = p.parse_args(argv)
    try:
        groups = dict(parse_group(g) for g in args.group)
        if args.base is not None and args.base not in groups:
            raise ValueError(f"--base {args.base!r} is not one of the groups ({', '.join(groups)})")
        scores = summarise(args.metrics_dir, groups)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for name, runs in groups.items():
        print(f"{name} ({len(runs)} run{'s' if len(runs) > 1 else ''})")
        for i, run in enumerate(runs):
            print(f"  {run:<28} dev {scores[name]['dev'][i]:6.2f}  test {scores[name]['test'][i]:6.2f}")
        print(f"  {'mean':<28} dev {_mean_sd(scores[name]['dev'])}  test {_mean_sd(scores[name]['test'])}")
    if args.base is not None:
        base = scores[args.base]
        for name in groups:
            if name == args.base:
                continue
            d_dev = statistics.fmean(scores[name]["dev"]) - statistics.fmean(base["dev"])
            d_test = statistics.fmean(scores[name]["test"]) - statistics.fmean(base["test"])
            print(f"{name} - {args.base}: dev {d_dev:+.2f}  test {d_test:+.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
