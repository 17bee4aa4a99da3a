"""The records a pretraining run writes: ``log.jsonl`` (one JSON object per line) and JSON summaries."""
import json
import os
from pathlib import Path
from typing import List


def write_json(path, obj) -> None:
    """Write JSON atomically (tmp file + rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def jsonable(d):
    """``d`` with tuples turned into lists (dataclass settings for JSON)."""
    if isinstance(d, dict):
        return {k: jsonable(v) for k, v in d.items()}
    if isinstance(d, (list, tuple)):
        return [jsonable(v) for v in d]
    return d


def read_log(path: Path) -> List[dict]:
    """The records of a run's ``log.jsonl`` in order ([] if it does not exist).

    A line that is not JSON (a write cut off when the run was killed) is
    skipped, as a resumed run drops it (:func:`truncate_log`)."""
    path = Path(path)
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def append_log(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")


def truncate_log(path: Path, step: int) -> None:
    """Drop log records written after ``step`` (by a run that was killed later) and cut-off lines."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                keep.append(line)
        except json.JSONDecodeError:
            continue  # a half-written last line
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(line + "\n" for line in keep), encoding="utf-8")
    os.replace(tmp, path)


def valid_history(path: Path) -> List[dict]:
    """The validation records of ``log.jsonl``."""
    return [rec for rec in read_log(path) if rec.get("event") == "valid"]


def format_valid(rec: dict) -> str:
    """One line for the progress bar: step, validation loss, perplexity or nearest-neighbour accuracy."""
    parts = [f"step {rec['step']}", f"valid loss {rec['valid_loss']:.4f}"]
    if "valid_ppl" in rec:
        parts.append(f"ppl {rec['valid_ppl']:.1f}")
    if "nn_top1" in rec:
        parts.append(f"nn@1 {rec['nn_top1']:.3f} nn@10 {rec['nn_top10']:.3f}")
    return " | ".join(parts)
