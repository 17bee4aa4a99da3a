"""The final table of project/main.sh: F1, words/s, kept LM layers, LM
multiply-adds and the wall time of every step.

Usage: python project/main_report.py --times training/main/step_times.tsv --seconds N
"""
import argparse
import json
import sys
from pathlib import Path

MAIN = Path("training/main")


def load(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


def describe(kept) -> str:
    """``{"forward": [], "backward": [0, 3]}`` -> ``"b 0,3"``."""
    return "; ".join(f"{d[0]} {','.join(map(str, kept[d]))}" for d in ("forward", "backward") if kept[d]) or "none"


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--times", type=Path, required=True)
    p.add_argument("--seconds", type=int, required=True)
    args = p.parse_args()
    shipped, speed = load(MAIN / "shipped.test.json"), load(MAIN / "shipped.speed.json")
    prune = load(MAIN / "pruned" / "prune.json")
    print(f"\n{'pipeline':<46} {'test F1':>7} {'words/s':>8} {'LM layers kept':>16} {'LM mult-adds/token':>19}")
    card = load(Path("metrics/shipped/en_ldnet_conll03.json")) or {}
    if shipped and speed:
        layers = describe(card["kept_layers"]) if card.get("kept_layers") else "-"
        mult = card.get("lm_multiply_adds_per_token", {}).get("lm", 0)
        print(f"{'en_ldnet_conll03 (shipped, pruned)':<46} {100 * shipped['ents_f']:7.2f} "
              f"{speed['words_per_second']:8,.0f} {layers:>16} {mult:>19,}")
    if prune:
        layers = describe(prune["kept_layers"])
        mult, f1, wps = prune["lm_multiply_adds_per_token"], prune["test_f1"], prune["words_per_second"]
        print(f"{'this run: LD-Net, all 20 LM layers':<46} {100 * f1['before']:7.2f} {wps['before']:8,.0f} "
              f"{'20 of 20':>16} {mult['before']:>19,}")
        print(f"{'this run: pruned and fine-tuned':<46} {100 * f1['after']:7.2f} {wps['after']:8,.0f} "
              f"{layers:>16} {mult['after']:>19,}")
    print("\nwall time per step")
    for line in args.times.read_text().splitlines():
        name, seconds = line.split("\t")
        print(f"  {name:<22} {int(seconds) // 60:3d} min {int(seconds) % 60:02d} s")
    print(f"  {'total':<22} {args.seconds // 60:3d} min {args.seconds % 60:02d} s")
    return 0 if shipped and prune else 1


if __name__ == "__main__":
    sys.exit(main())
