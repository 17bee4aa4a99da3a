"""Hyper-parameters of the dense LSTM language model (JSON-able, validated).

Depends on the standard library only, so reading a checkpoint's
``config.json`` needs no torch.
"""
from dataclasses import asdict, dataclass, fields
from typing import Any, Dict, Tuple

OUTPUT_TYPES = ("softmax", "adaptive", "cosine", "vmf")
CONTINUOUS_OUTPUTS = ("cosine", "vmf")
DIRECTIONS = ("forward", "backward")


@dataclass
class LMConfig:
    """Hyper-parameters of a :class:`~spacy_ldnet.lm.model.DenseLSTMLM` (JSON-able, validated).

    Attributes:
        vocab_size: rows of the input embedding, special tokens included.
        embed_dim: input word-embedding width (50 = GloVe 6B 50d).
        hidden_dim: width of every LSTM layer.
        num_layers: L, number of densely connected LSTM layers (LD-Net
            default 10). 0 is allowed (a pruned model that keeps no layer).
        dropout: standard dropout on the embedding and on each layer output.
        layer_dropout: p of layer-wise dropout (LD-Net section 3.4), in [0, 1].
        output: ``"softmax"`` (full softmax), ``"adaptive"`` (adaptive
            softmax, Grave et al. 2017), ``"cosine"`` or ``"vmf"`` (ELMo-C
            continuous output with the cosine or NLLvMF loss).
        output_vocab_size: rows of the target vocabulary; 0 means
            ``vocab_size``. The target vocabulary is the *prefix* of the input
            vocabulary (ids ``0 .. output_vocab_size - 1``), so a target id is
            the input id of the next token; the data pipeline must map
            targets outside it to an in-vocabulary id (e.g. ``<unk>``) or mask
            them.
        cutoffs: adaptive-softmax cut-offs, strictly increasing, each in
            ``(0, output_vocab_size)`` (checked only when ``output ==
            "adaptive"``).
        adaptive_div_value: adaptive-softmax ``div_value`` (tail cluster
            widths shrink by this factor).
        target_dim: width of the frozen target-embedding table of the
            continuous output (GloVe 6B 50d: 50).
        vmf_reg1: lambda_1 of the NLLvMF loss (Kumar & Tsvetkov 2019,
            section 3.2 regulariser 1, penalises ``||e_hat||``).
        vmf_reg2: lambda_2 of the NLLvMF loss (regulariser 2, scales the
            ``e_hat . e(w)`` term). Both are applied together, see
            :class:`spacy_ldnet.lm.outputs.ContinuousOutput`.
        freeze_input: keep the input embedding frozen (ELMo-C) instead of
            training it.
        direction: ``"forward"`` or ``"backward"``; metadata for the data
            pipeline and downstream users, the model itself always reads left
            to right (see :mod:`spacy_ldnet.lm.encoder`).
        proj_dim: width of an optional linear projection of the dense output
            before the output layer; 0 (default) = no projection.

    Raises:
        ValueError: on construction, for any out-of-range or ill-typed value
            (the message names the field and the accepted values).
    """

    vocab_size: int
    embed_dim: int = 50
    hidden_dim: int = 128
    num_layers: int = 10
    dropout: float = 0.1
    layer_dropout: float = 0.1
    output: str = "adaptive"
    output_vocab_size: int = 0
    cutoffs: Tuple[int, ...] = (4000, 20000)
    adaptive_div_value: float = 4.0
    target_dim: int = 50
    vmf_reg1: float = 0.02
    vmf_reg2: float = 0.1
    freeze_input: bool = False
    direction: str = "forward"
    proj_dim: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.cutoffs, list):
            self.cutoffs = tuple(self.cutoffs)
        self.validate()

    # -- validation ---------------------------------------------------------
    def validate(self) -> None:
        """Check every field; raise ``ValueError`` naming the bad one."""
        for name, minimum in (("vocab_size", 1), ("embed_dim", 1), ("hidden_dim", 1), ("num_layers", 0),
                              ("output_vocab_size", 0), ("target_dim", 2), ("proj_dim", 0)):
            _check_int(self, name, minimum)
        inf = float("inf")
        _check_float(self, "dropout", 0.0, 1.0, hi_inclusive=False)
        _check_float(self, "layer_dropout", 0.0, 1.0, hi_inclusive=True)
        _check_float(self, "vmf_reg1", 0.0, inf, hi_inclusive=True)
        _check_float(self, "vmf_reg2", 0.0, inf, hi_inclusive=True)
        if self.vmf_reg2 <= 0:
            raise ValueError(f"LMConfig.vmf_reg2 must be > 0 (it scales the e_hat.e(w) term), got {self.vmf_reg2}")
        _check_float(self, "adaptive_div_value", 1.0, inf, hi_inclusive=True)
        if not isinstance(self.freeze_input, bool):
            raise ValueError(f"LMConfig.freeze_input must be a bool, got {self.freeze_input!r}")
        if self.output not in OUTPUT_TYPES:
            raise ValueError(f"LMConfig.output must be one of {OUTPUT_TYPES}, got {self.output!r}")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"LMConfig.direction must be one of {DIRECTIONS}, got {self.direction!r}")
        if self.output_vocab_size > self.vocab_size:
            raise ValueError(
                f"LMConfig.output_vocab_size ({self.output_vocab_size}) must be <= vocab_size "
                f"({self.vocab_size}): the target vocabulary is a prefix of the input vocabulary."
            )
        _check_cutoffs(self)

    # -- derived -------------------------------------------------------------
    @property
    def target_vocab_size(self) -> int:
        """Rows of the target vocabulary (``output_vocab_size or vocab_size``)."""
        return self.output_vocab_size or self.vocab_size

    @property
    def is_continuous(self) -> bool:
        return self.output in CONTINUOUS_OUTPUTS

    @property
    def encoder_output_dim(self) -> int:
        """Width of the dense output: ``embed_dim + num_layers * hidden_dim``."""
        return self.embed_dim + self.num_layers * self.hidden_dim

    # -- (de)serialisation ------------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        """JSON-able dict (``cutoffs`` as a list)."""
        d = asdict(self)
        d["cutoffs"] = list(self.cutoffs)
        return d

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "LMConfig":
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: unknown keys, missing ``vocab_size`` or invalid values.
        """
        if not isinstance(d, dict):
            raise ValueError(f"LMConfig.from_dict expects a dict, got {type(d).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"Unknown LMConfig keys {unknown}; known keys: {sorted(names)}")
        if "vocab_size" not in d:
            raise ValueError("LMConfig needs 'vocab_size'")
        d = dict(d)
        if "cutoffs" in d and isinstance(d["cutoffs"], list):
            d["cutoffs"] = tuple(d["cutoffs"])
        return cls(**d)

    def replace(self, **changes: Any) -> "LMConfig":
        """Copy with some fields changed (validated)."""
        d = self.to_dict()
        d.update(changes)
        return LMConfig.from_dict(d)


def _check_int(config: "LMConfig", name: str, minimum: int) -> None:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"LMConfig.{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"LMConfig.{name} must be >= {minimum}, got {value}")


def _check_float(config: "LMConfig", name: str, lo: float, hi: float, hi_inclusive: bool) -> None:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"LMConfig.{name} must be a number, got {value!r}")
    ok = lo <= value <= hi if hi_inclusive else lo <= value < hi
    if not ok:
        bracket = "]" if hi_inclusive else ")"
        raise ValueError(f"LMConfig.{name} must be in [{lo}, {hi}{bracket}, got {value}")


def _check_cutoffs(config: "LMConfig") -> None:
    cutoffs = config.cutoffs
    if not isinstance(cutoffs, tuple) or any(isinstance(c, bool) or not isinstance(c, int) for c in cutoffs):
        raise ValueError(f"LMConfig.cutoffs must be a tuple of ints, got {cutoffs!r}")
    if config.output != "adaptive":
        return
    v = config.target_vocab_size
    if not cutoffs:
        raise ValueError("LMConfig.cutoffs must not be empty for output='adaptive'")
    if list(cutoffs) != sorted(set(cutoffs)) or cutoffs[0] <= 0 or cutoffs[-1] >= v:
        raise ValueError(
            f"LMConfig.cutoffs must be strictly increasing ints in (0, {v}) for an output "
            f"vocabulary of {v} rows, got {cutoffs}. Fix: pass smaller cutoffs, "
            f"e.g. cutoffs=({max(1, v // 10)},) for a small vocabulary."
        )
