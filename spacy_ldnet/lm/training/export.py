"""Models out of a pretraining run: the final ``model/`` directory and exports for shipping."""
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import List, Optional

from ..checkpoint import load_lm, save_lm
from .build import unwrap
from .settings import PretrainError


def param_digest(model) -> str:
    """SHA-1 of all parameters and buffers (bytes, in state-dict order); equal digests = equal weights."""
    h = hashlib.sha1()
    for k, v in unwrap(model).state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def save_lm_replacing(model, vocab: List[str], dest: Path, *, dtype: str, extra: dict) -> Path:
    """``save_lm`` into ``dest``, replacing what was there only once the new copy is complete."""
    dest = Path(dest)
    tmp = dest.with_name(dest.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    save_lm(unwrap(model), vocab, tmp, dtype=dtype, extra=extra)
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(tmp, dest)
    return dest


def _training_summary(metrics: dict) -> dict:
    return {
        "steps": metrics.get("step"),
        "tokens_seen": metrics.get("tokens_seen"),
        "train_seconds": round(float(metrics.get("elapsed_s", 0.0)), 1),
        "world_size": metrics.get("world_size"),
        "threads": metrics.get("threads"),
        "device": metrics.get("device"),
        "train_files": [Path(p).name for p in metrics.get("config", {}).get("train", [])],
        "last_valid": {k: v for k, v in (metrics.get("last_valid") or {}).items() if k.startswith(("valid_", "nn_"))},
    }


def export_model(run_dir, dest, *, dtype: str = "float16", extra: Optional[dict] = None) -> Path:
    """Copy the final model of a pretraining run to ``dest`` in ``dtype`` storage.

    run_dir: a ``--output`` directory holding ``model/`` (or a checkpoint
        directory written by ``save_lm``); dest: the new checkpoint directory
        (``model.safetensors`` + ``config.json`` + ``vocab.txt``).
    The run's ``extra`` (direction, lowercase, bos, ...) is kept; ``extra``
    adds to it, and a ``training`` entry summarises ``metrics.json``
    (steps, tokens seen, training seconds, last validation figures).

    Returns: ``dest``. Raises: PretrainError if the run has no model.
    """
    run_dir, dest = Path(run_dir), Path(dest)
    src = run_dir / "model" if (run_dir / "model").is_dir() else run_dir
    if not (src / "config.json").is_file():
        raise PretrainError(f"No model in {run_dir} (expected {run_dir / 'model'}). Fix: finish the run first.")
    model, vocab, old_extra = load_lm(src)
    info = dict(old_extra)
    metrics_path = run_dir / "metrics.json"
    if metrics_path.is_file():
        info["training"] = _training_summary(json.loads(metrics_path.read_text(encoding="utf-8")))
    info.update(extra or {})
    return save_lm_replacing(model, vocab, dest, dtype=dtype, extra=info)
