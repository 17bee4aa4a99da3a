"""Resumable checkpoints of a pretraining run (``OUTPUT/checkpoints``).

Each ``checkpoints/step-NNNNNNNN/`` holds the model (``save_lm``:
``model.safetensors``, ``config.json``, ``vocab.txt``) and the training state
(:mod:`spacy_ldnet.lm.training.state`). It is written under a temporary name
and renamed when complete; ``checkpoints/latest`` (the name of the newest
complete checkpoint) is replaced atomically afterwards, so a kill at any
moment leaves ``latest`` pointing at a complete checkpoint.
"""
import os
import shutil
from pathlib import Path
from typing import List, Optional, Tuple

from ..checkpoint import LMCheckpointError, load_lm, save_lm
from .settings import PretrainConfig, PretrainError
from .state import PICKLE_STATE_FILE, STATE_FILES, StateFormatError, load_state, save_state

LATEST_FILE = "latest"
MODEL_FILES = ("model.safetensors", "config.json", "vocab.txt")
#: settings a resumed run must share with the run that wrote the checkpoint
RESUME_KEYS = ("direction", "output_layer", "layers", "hidden", "embed_dim", "batch_size", "seed")


def ckpt_root(output: Path) -> Path:
    return Path(output) / "checkpoints"


def _pointer_fix(latest: Path, root: Path) -> str:
    return (
        f"Fix: point {latest} at an intact step-* directory in {root} (write its name into the file), "
        f"or delete {latest} / pass --no-resume to start from scratch."
    )


def find_latest_checkpoint(output) -> Optional[Path]:
    """Return the checkpoint directory named by ``OUTPUT/checkpoints/latest``, or ``None`` if absent.

    Raises:
        PretrainError: ``latest`` names a missing or incomplete directory, or one
            whose training state is in the pickle format this package never
            loads (the message names the file and the fix).
    """
    root = ckpt_root(Path(output))
    latest = root / LATEST_FILE
    if not latest.exists():
        return None
    name = latest.read_text(encoding="utf-8").strip()
    path = root / name
    if not name or not path.is_dir():
        raise PretrainError(
            f"Checkpoint pointer {latest} names {name!r}, which is not a directory. {_pointer_fix(latest, root)}"
        )
    if (path / PICKLE_STATE_FILE).is_file() and not (path / STATE_FILES[0]).is_file():
        raise PretrainError(
            f"{path / PICKLE_STATE_FILE} is a training state in the pickle format, which spacy-ldnet does "
            f"not load (unpickling can run code). Fix: continue the weights in a new run with "
            f"--init-from {path} and another --output (a fresh optimizer), or finish this run with the "
            f"spacy-ldnet release that wrote it."
        )
    for f in STATE_FILES + MODEL_FILES:
        if not (path / f).is_file():
            raise PretrainError(f"Checkpoint file missing: {path / f}. {_pointer_fix(latest, root)}")
    return path


def save_checkpoint(output: Path, model, vocab_tokens: List[str], extra: dict, state: dict, keep: int) -> Path:
    """Write ``checkpoints/step-<state['step']>`` and point ``latest`` at it; keep the newest ``keep``.

    ``model``: the bare :class:`~spacy_ldnet.lm.model.DenseLSTMLM` (not the DDP wrapper).
    Returns the checkpoint directory.
    """
    root = ckpt_root(output)
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{state['step']:08d}"
    final = root / name
    latest = root / LATEST_FILE
    if final.is_dir() and latest.exists() and latest.read_text(encoding="utf-8").strip() == name:
        return final  # this step is already saved (a run resumed after its last step)
    tmp = root / f".tmp-{name}"
    if tmp.exists():
        shutil.rmtree(tmp)
    save_lm(model, vocab_tokens, tmp, dtype="float32", extra=extra)
    save_state(tmp, state)
    if final.exists():  # a stale copy that `latest` does not point at
        shutil.rmtree(final)
    os.replace(tmp, final)
    pointer_tmp = root / (LATEST_FILE + ".tmp")
    pointer_tmp.write_text(name + "\n", encoding="utf-8")
    os.replace(pointer_tmp, latest)
    steps = sorted(p for p in root.glob("step-*") if p.is_dir())
    for p in steps[: max(0, len(steps) - max(1, keep))]:
        if p != final:
            shutil.rmtree(p, ignore_errors=True)
    for p in root.glob(".tmp-step-*"):
        shutil.rmtree(p, ignore_errors=True)
    return final


def load_checkpoint(path: Path, cfg: PretrainConfig, world_size: int) -> Tuple[dict, object, List[str]]:
    """Read the checkpoint ``path`` and check that ``cfg`` can resume it.

    Returns: ``(state, model, vocab tokens)``.

    Raises:
        PretrainError: unreadable files, another number of processes, or a
            setting of :data:`RESUME_KEYS` that differs (the message names it).
    """
    fix = (
        f"Fix: delete {path} and write the name of an older step-* directory into "
        f"{path.parent / LATEST_FILE}, or pass --no-resume to start from scratch."
    )
    try:
        state = load_state(path)
    except StateFormatError as e:
        raise PretrainError(f"Cannot read the training state of {path}: {e}. {fix}") from e
    try:
        model, vocab_tokens, _ = load_lm(path)
    except (LMCheckpointError, OSError, ValueError) as e:
        raise PretrainError(f"Cannot read the model of checkpoint {path}: {e}. {fix}") from e
    if state.get("world_size", 1) != world_size:
        raise PretrainError(
            f"Checkpoint {path} was written by a run with {state.get('world_size', 1)} processes, "
            f"this run has {world_size}. Fix: resume with the same number of processes, or pass --no-resume."
        )
    saved = state.get("config", {})
    for key in RESUME_KEYS:
        if key in saved and saved[key] != getattr(cfg, key):
            raise PretrainError(
                f"Checkpoint {path} was trained with {key}={saved[key]!r}, this run asks for "
                f"{key}={getattr(cfg, key)!r}. Fix: use the same setting, or pass --no-resume "
                f"(or another --output) to start a new run."
            )
    return state, model, vocab_tokens
