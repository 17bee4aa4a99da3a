"""Resumable training state (optimizer, counters, RNG and data positions) without pickle.

A checkpoint directory holds the state in two files:

* ``trainer_state.safetensors``: every tensor (Adam moments and step counts,
  RNG states as uint8 tensors), named by its place in the state;
* ``trainer_state.json``: everything else, with ``{"__tensor__": NAME}`` where
  a tensor was, ``{"__tuple__": [...]}`` for tuples and
  ``{"__items__": [[key, value], ...]}`` for dicts with non-string keys (the
  optimizer's per-parameter state is keyed by integers).

Loading either file runs no code from it. The JSON is written last, so a
directory with ``trainer_state.json`` holds a complete state.
"""
import contextlib
import json
import os
from pathlib import Path
from typing import Dict

import torch

STATE_JSON = "trainer_state.json"
STATE_TENSORS = "trainer_state.safetensors"
STATE_FILES = (STATE_JSON, STATE_TENSORS)
PICKLE_STATE_FILE = "trainer_state.pt"  # a pickled state: refused, never loaded
FORMAT = "spacy-ldnet-trainer-state"
VERSION = 1


class StateFormatError(ValueError):
    """A training state file is unreadable, incomplete or of another format."""


def _encode(obj, tensors: Dict[str, torch.Tensor], name: str):
    if isinstance(obj, torch.Tensor):
        tensors[name] = obj.detach().to("cpu").contiguous().clone()
        return {"__tensor__": name}
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: _encode(v, tensors, f"{name}.{k}") for k, v in obj.items()}
        bad = [k for k in obj if not isinstance(k, (str, int)) or isinstance(k, bool)]
        if bad:
            raise TypeError(f"training state {name}: dict key {bad[0]!r} is neither str nor int")
        return {"__items__": [[k, _encode(v, tensors, f"{name}.{k}")] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, tensors, f"{name}.{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, tensors, f"{name}.{i}") for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"training state {name}: cannot store a {type(obj).__name__}")


def _decode(obj, tensors: Dict[str, torch.Tensor]):
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if set(obj) == {"__tensor__"}:
        name = obj["__tensor__"]
        if name not in tensors:
            raise StateFormatError(f"tensor {name!r} is missing from {STATE_TENSORS}")
        return tensors[name]
    if set(obj) == {"__tuple__"}:
        return tuple(_decode(v, tensors) for v in obj["__tuple__"])
    if set(obj) == {"__items__"}:
        return {k: _decode(v, tensors) for k, v in obj["__items__"]}
    return {k: _decode(v, tensors) for k, v in obj.items()}


def save_state(folder: Path, state: dict) -> None:
    """Write ``state`` (nested dicts, lists, tuples, tensors, JSON scalars) to ``folder``.

    Raises:
        TypeError: a value of another type (the message names its place).
    """
    from safetensors.torch import save_file

    tensors: Dict[str, torch.Tensor] = {}
    encoded = {"format": FORMAT, "version": VERSION, "state": _encode(state, tensors, "state")}
    folder = Path(folder)
    save_file(tensors, str(folder / STATE_TENSORS))
    tmp = folder / (STATE_JSON + ".tmp")
    tmp.write_text(json.dumps(encoded, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, folder / STATE_JSON)


def load_state(folder: Path) -> dict:
    """Read the state :func:`save_state` wrote to ``folder``; tensors come back on CPU.

    Raises:
        StateFormatError: a missing, truncated or corrupt file, or another format
            or version (the message names the file).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    json_path, tensor_path = folder / STATE_JSON, folder / STATE_TENSORS
    try:
        meta = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise StateFormatError(f"{json_path} is unreadable ({e})") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != VERSION:
        found = (meta.get("format"), meta.get("version")) if isinstance(meta, dict) else type(meta).__name__
        raise StateFormatError(f"{json_path} has format {found!r}, expected ({FORMAT!r}, {VERSION})")
    try:
        tensors = load_file(str(tensor_path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise StateFormatError(f"{tensor_path} is unreadable ({e})") from e
    try:
        return _decode(meta["state"], tensors)
    except StateFormatError as e:
        raise StateFormatError(f"{json_path}: {e}") from e


def rng_state() -> dict:
    """The torch CPU (and, once initialised, CUDA) generator states, as uint8 tensors."""
    s = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        s["cuda"] = torch.cuda.get_rng_state()
    return s


def set_rng_state(s: dict) -> None:
    """Restore generator states saved by :func:`rng_state`."""
    torch.set_rng_state(s["torch"])
    if "cuda" in s and torch.cuda.is_available():
        torch.cuda.set_rng_state(s["cuda"])


@contextlib.contextmanager
def preserved_rng():
    """Run the block without changing the generator states seen after it (validation)."""
    s = rng_state()
    try:
        yield
    finally:
        set_rng_state(s)
