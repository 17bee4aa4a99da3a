"""Save and load a :class:`~spacy_ldnet.lm.model.DenseLSTMLM` as a directory.

Layout (format ``"spacy-ldnet-lm"``, version 1)::

    PATH/
      config.json        {"format": "spacy-ldnet-lm", "version": 1,
                          "weights_dtype": "float32" | "float16" | "bfloat16",
                          <LMConfig.to_dict() fields>, "extra": {...}}
      model.safetensors  the model's state_dict (all parameters and buffers)
      vocab.txt          the input vocabulary, one token per line, row order
                         (the target vocabulary is its first
                         ``target_vocab_size`` lines)

* **Frozen target table** (continuous outputs): stored in ``model.safetensors``
  as ``output_layer.target_vectors`` (unit-normalised rows) and
  ``output_layer.has_vector``. This keeps a checkpoint self-contained and exact
  (no GloVe package needed at load time, no dependence on the GloVe version)
  at a modest cost: 100,000 targets x 50 dims = 20 MB in float32, 10 MB in
  float16.
* **dtype**: floating tensors are written in ``dtype``; loading always gives a
  float32 model (float16 round trips within ~1e-3 relative).
* **Atomic writes**: each file is written to ``NAME.tmp`` and renamed;
  ``config.json`` is written last, so a directory with a ``config.json`` is
  complete.
* Resumable training state (optimizer, step, RNG, data position) is stored
  beside these files by :mod:`spacy_ldnet.lm.training.checkpoints`, not here;
  ``extra`` carries small JSON-able metadata (e.g. step, validation figures).
"""
import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import torch

from .model import DenseLSTMLM, LMConfig

FORMAT = "spacy-ldnet-lm"
VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
VOCAB_FILE = "vocab.txt"
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_RESERVED = ("format", "version", "weights_dtype", "extra")


class LMCheckpointError(ValueError):
    """A checkpoint directory is missing, incomplete, corrupt or inconsistent.

    The message names the offending file and a fix.
    """


def _write_atomic(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def save_lm(
    model: DenseLSTMLM,
    vocab: List[str],
    path: Union[str, Path],
    *,
    dtype: str = "float32",
    extra: Optional[Dict[str, Any]] = None,
) -> Path:
    """Write ``model`` and ``vocab`` to the directory ``path`` (created if needed).

    Args:
        model: the LM (any device; tensors are copied to CPU).
        vocab: input vocabulary, ``len(vocab) == model.config.vocab_size``;
            tokens must not contain ``"\\n"``.
        path: target directory; existing checkpoint files are replaced.
        dtype: ``"float32"``, ``"float16"`` or ``"bfloat16"`` for the floating
            tensors.
        extra: JSON-able dict stored in ``config.json`` under ``"extra"``.

    Returns:
        The directory path.

    Raises:
        ValueError: bad dtype, vocabulary size, token or non-JSON-able extra.
    """
    from safetensors.torch import save_file

    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    config = model.config
    vocab = list(vocab)
    if len(vocab) != config.vocab_size:
        raise ValueError(f"vocab has {len(vocab)} tokens but the model's vocab_size is {config.vocab_size}")
    bad = [t for t in vocab if not isinstance(t, str) or "\n" in t]
    if bad:
        raise ValueError(f"vocab tokens must be strings without newlines, got {bad[:3]!r}")
    meta: Dict[str, Any] = {"format": FORMAT, "version": VERSION, "weights_dtype": dtype}
    meta.update(config.to_dict())
    meta["extra"] = dict(extra or {})
    try:
        config_text = json.dumps(meta, indent=2, sort_keys=False) + "\n"
    except (TypeError, ValueError) as e:
        raise ValueError(f"extra must be JSON-serialisable: {e}") from e

    tensors = {}
    for name, t in model.state_dict().items():
        t = t.detach().to("cpu")
        if t.is_floating_point():
            t = t.to(_DTYPES[dtype])
        tensors[name] = t.contiguous().clone()

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    _write_atomic(out / WEIGHTS_FILE, lambda p: save_file(tensors, str(p), metadata={"format": "pt"}))

    def _write_vocab(p: Path) -> None:
        with open(p, "w", encoding="utf8", newline="") as f:
            f.write("".join(t + "\n" for t in vocab))

    _write_atomic(out / VOCAB_FILE, _write_vocab)
    _write_atomic(out / CONFIG_FILE, lambda p: p.write_text(config_text, encoding="utf8"))
    return out


def read_lm_config(path: Union[str, Path]) -> Tuple[LMConfig, Dict[str, Any]]:
    """Read and check ``PATH/config.json``.

    Returns:
        ``(config, meta)`` where ``meta`` holds ``format``, ``version``,
        ``weights_dtype`` and ``extra``.

    Raises:
        LMCheckpointError: missing directory or file, invalid JSON, wrong
            format or version, invalid config values.
    """
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise LMCheckpointError(
            f"{folder} is a file, not an LM checkpoint directory. Fix: pass the directory that holds "
            f"{CONFIG_FILE}, {WEIGHTS_FILE} and {VOCAB_FILE}"
            + (f" ({folder.parent})." if folder.name in (CONFIG_FILE, WEIGHTS_FILE, VOCAB_FILE) else ".")
        )
    if not folder.is_dir():
        raise LMCheckpointError(
            f"LM checkpoint directory not found: {folder}. Fix: pass the directory written by "
            f"save_lm / spacy-ldnet pretrain-lm (it holds {CONFIG_FILE}, {WEIGHTS_FILE}, {VOCAB_FILE})."
        )
    cfg_path = folder / CONFIG_FILE
    if not cfg_path.is_file():
        if (folder / "model" / CONFIG_FILE).is_file():
            fix = f"pass {folder / 'model'}, the final model of this pretraining run"
        else:
            fix = "use another checkpoint or re-save the model"
        raise LMCheckpointError(
            f"{cfg_path} is missing, so {folder} is not a complete LM checkpoint (an interrupted "
            f"save leaves no config.json). Fix: {fix}."
        )
    try:
        meta = json.loads(cfg_path.read_text(encoding="utf8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise LMCheckpointError(f"{cfg_path} is not valid JSON ({e}). Fix: restore it or re-save the model.") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise LMCheckpointError(
            f"{cfg_path} has format {found!r}, expected {FORMAT!r}. Fix: pass a spacy-ldnet LM "
            f"checkpoint directory (written by save_lm)."
        )
    version = meta.get("version")
    if version != VERSION:
        raise LMCheckpointError(
            f"{cfg_path} has format version {version!r}; this spacy-ldnet reads version {VERSION}. "
            f"Fix: load it with the spacy-ldnet release that wrote it, or re-save it."
        )
    dtype = meta.get("weights_dtype", "float32")
    if dtype not in _DTYPES:
        raise LMCheckpointError(f"{cfg_path}: unknown weights_dtype {dtype!r}; expected one of {sorted(_DTYPES)}.")
    cfg_dict = {k: v for k, v in meta.items() if k not in _RESERVED}
    try:
        config = LMConfig.from_dict(cfg_dict)
    except (TypeError, ValueError) as e:
        raise LMCheckpointError(f"{cfg_path} holds an invalid LM config: {e}. Fix: correct or re-save it.") from e
    extra = meta.get("extra") or {}
    return config, {"format": FORMAT, "version": version, "weights_dtype": dtype, "extra": extra}


def _read_vocab(path: Path, expected: int) -> List[str]:
    if not path.is_file():
        raise LMCheckpointError(f"{path} is missing. Fix: copy the vocab.txt that was saved with these weights.")
    try:
        with open(path, "r", encoding="utf8", newline="") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise LMCheckpointError(f"{path} could not be read as UTF-8 ({e}). Fix: restore it or re-save the model.") from e
    tokens = text.split("\n")
    if tokens and tokens[-1] == "":
        tokens.pop()
    if len(tokens) != expected:
        raise LMCheckpointError(
            f"{path} has {len(tokens)} tokens but config.json says vocab_size={expected}. "
            f"Fix: use the vocab.txt saved with these weights."
        )
    return tokens


def load_lm(
    path: Union[str, Path], *, map_location: Union[str, torch.device] = "cpu"
) -> Tuple[DenseLSTMLM, List[str], Dict[str, Any]]:
    """Load a checkpoint directory written by :func:`save_lm`.

    Args:
        path: the checkpoint directory.
        map_location: device for the model (``"cpu"``, ``"cuda:0"``, ...).

    Returns:
        ``(model, vocab, extra)``: a float32 model in eval mode (call
        ``.train()`` to resume training; ``freeze_input`` is restored), the
        vocabulary list, and the ``extra`` dict given to :func:`save_lm`.

    Raises:
        LMCheckpointError: missing directory or file, wrong format or version,
            vocabulary size, tensor names or shapes that disagree with
            ``config.json``, or a truncated / corrupt ``model.safetensors``.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(path)
    config, meta = read_lm_config(folder)
    vocab = _read_vocab(folder / VOCAB_FILE, config.vocab_size)
    weights_path = folder / WEIGHTS_FILE
    if not weights_path.is_file():
        raise LMCheckpointError(f"{weights_path} is missing. Fix: restore it or use another checkpoint.")
    try:
        tensors = load_file(str(weights_path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise LMCheckpointError(
            f"{weights_path} is truncated or corrupt ({e}). Fix: restore it from a backup or an "
            f"earlier checkpoint, or re-save the model."
        ) from e

    target_vectors = None
    if config.is_continuous:
        target_vectors = torch.zeros(config.target_vocab_size, config.target_dim)
    model = DenseLSTMLM(config, target_vectors=target_vectors)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise LMCheckpointError(
            f"{weights_path} does not match {folder / CONFIG_FILE}: missing tensors {missing[:5]}, "
            f"unexpected tensors {unexpected[:5]}. Fix: keep config.json and model.safetensors from "
            f"the same save."
        )
    mismatched = [
        f"{name}: file {tuple(tensors[name].shape)} vs config {tuple(t.shape)}"
        for name, t in expected.items()
        if tuple(tensors[name].shape) != tuple(t.shape)
    ]
    if mismatched:
        raise LMCheckpointError(
            f"{weights_path} has tensor shapes that disagree with {folder / CONFIG_FILE} "
            f"(vocab_size={config.vocab_size}, embed_dim={config.embed_dim}, hidden_dim="
            f"{config.hidden_dim}, num_layers={config.num_layers}): {'; '.join(mismatched[:5])}. "
            f"Fix: keep config.json and model.safetensors from the same save."
        )
    state = {name: tensors[name].to(expected[name].dtype) for name in expected}
    model.load_state_dict(state)
    model.encoder.embedding.weight.requires_grad_(not config.freeze_input)
    model.to(map_location)
    model.eval()
    return model, vocab, dict(meta["extra"])
