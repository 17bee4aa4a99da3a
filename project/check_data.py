"""Check that the CoNLL files exist before anything else runs.

Usage: python project/check_data.py DATA_DIR FILE [FILE ...]
Exits 1 with a message naming the missing path and the fix.
"""
import sys
from pathlib import Path


def main(folder: str, *names: str) -> int:
    missing = [Path(folder) / n for n in names if not (Path(folder) / n).is_file()]
    if missing:
        for p in missing:
            print(f"Error: corpus file not found: {p.resolve()}", file=sys.stderr)
        print(
            "Fix: put the CoNLL files there, or point the project at them: "
            "spacy project run all . --vars.data_dir /path/to/data "
            "(the folder that holds conll2003/train.txt, dev.txt, test.txt).",
            file=sys.stderr,
        )
        return 1
    print(f"Found {', '.join(names)} in {Path(folder).resolve()}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], *sys.argv[2:]))
