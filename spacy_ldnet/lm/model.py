"""Densely connected LSTM language model (LD-Net) with pluggable output layers.

Single-file model in the Hugging Face spirit: it depends on torch only (no
spaCy, no thinc) so that it can be read, tested and exported on its own.

Sources
-------
* Liu, Ren, Shang, Gu, Peng & Han (EMNLP 2018), "Efficient Contextualized
  Representation: Language Model Pruning for Sequence Labeling" (LD-Net):
  section 3.2 (dense connectivity), 3.3 (layer selection, here only the
  ``layer_scales`` hook and :meth:`DenseLSTMEncoder.prune`), 3.4 (layer-wise
  dropout).
* Li, Kumar, Tsvetkov, et al. (TACL 2019), "Efficient Contextual Representation
  Learning With Continuous Outputs" (ELMo-C): the continuous output layer, see
  :mod:`spacy_ldnet.lm.outputs`.

Design decisions (documented here once, referred to elsewhere)
---------------------------------------------------------------
* **Dense stack.** Layer ``l`` (0-based) is a single-layer unidirectional LSTM
  whose input at time ``t`` is ``[x_t; h_0,t; ...; h_{l-1},t]`` (width
  ``embed_dim + l * hidden_dim``). The encoder output is
  ``[x_t; h_0,t; ...; h_{L-1},t]`` (width ``embed_dim + L * hidden_dim``).
* **Padding.** The batch is packed once (``pack_padded_sequence(...,
  enforce_sorted=False)``) and every layer runs on the packed data, so padded
  positions never reach the LSTMs; outputs at padded positions are exactly 0.
  Rows with length 0 are allowed and give all-zero outputs.
* **Standard dropout** (``config.dropout``) is applied to the word embedding
  ``x`` and to every layer output ``h_l`` (one mask per tensor, shared by the
  output concatenation and the deeper layers' inputs).
* **Layer-wise dropout** (LD-Net section 3.4, ``config.layer_dropout = p``): in
  training mode, once per forward call (i.e. per batch) and independently per
  layer, with probability ``p`` the output of layer ``l`` is replaced by zeros
  *in the inputs of the deeper layers only*; the output concatenation always
  keeps ``h_l``. Surviving deep paths are rescaled by ``1 / (1 - p)``
  (inverted dropout) so that the expected input of a deeper layer equals its
  eval-mode input; with ``p == 1`` every deep path is zero (no rescaling).
  The embedding ``x`` is never layer-dropped. Off in eval mode.
* **Layer scales** (LD-Net section 3.3): ``layer_scales[l]`` multiplies ``h_l``
  both in the output concatenation and in every deeper layer's input; it is
  differentiable. A layer whose scale is exactly 0 can be removed with
  :meth:`DenseLSTMEncoder.prune` without changing any other column.
* **Next-word prediction** (:class:`DenseLSTMLM`): the *full dense output*
  ``[x_t; h_0,t; ...; h_{L-1},t]`` at position ``t`` predicts the target at
  ``t`` (normally token ``t + 1``; building targets is the data pipeline's
  job). If ``config.proj_dim > 0`` a linear projection to ``proj_dim`` is
  applied first (cheaper softmax); with the default ``proj_dim = 0`` the output
  layer reads the dense output directly (the continuous output layer has its
  own linear map to the target-embedding width, so it needs no projection).
* **Direction.** The model always reads left to right. A *backward* LM is the
  same model trained on sentences reversed *by the data pipeline*
  (:mod:`spacy_ldnet.lm.data` reverses each sentence's words before adding the
  boundary tokens and building next-token targets). :func:`reverse_padded` is
  the same reversal applied to a padded batch; to get backward features
  aligned with the original token order use
  :meth:`DenseLSTMEncoder.encode_text_order`, which reverses the input rows,
  encodes, and reverses the output rows back.
* **Initialisation.** PyTorch defaults (LSTM weights ~ U(-1/sqrt(h), 1/sqrt(h)),
  embedding ~ N(0, 1)), except that the forget-gate bias of every LSTM starts
  at 1 (``bias_ih`` forget slice = 1, ``bias_hh`` forget slice = 0).
"""
from dataclasses import asdict, dataclass, fields
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

OUTPUT_TYPES = ("softmax", "adaptive", "cosine", "vmf")
CONTINUOUS_OUTPUTS = ("cosine", "vmf")
DIRECTIONS = ("forward", "backward")


# ---------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------


@dataclass
class LMConfig:
    """Hyper-parameters of a :class:`DenseLSTMLM` (JSON-able, validated).

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
            to right (see the module docstring).
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

        def _int(name: str, minimum: int) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"LMConfig.{name} must be an int, got {value!r}")
            if value < minimum:
                raise ValueError(f"LMConfig.{name} must be >= {minimum}, got {value}")

        def _float(name: str, lo: float, hi: float, hi_inclusive: bool) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"LMConfig.{name} must be a number, got {value!r}")
            ok = lo <= value <= hi if hi_inclusive else lo <= value < hi
            if not ok:
                bracket = "]" if hi_inclusive else ")"
                raise ValueError(f"LMConfig.{name} must be in [{lo}, {hi}{bracket}, got {value}")

        _int("vocab_size", 1)
        _int("embed_dim", 1)
        _int("hidden_dim", 1)
        _int("num_layers", 0)
        _int("output_vocab_size", 0)
        _int("target_dim", 2)
        _int("proj_dim", 0)
        _float("dropout", 0.0, 1.0, hi_inclusive=False)
        _float("layer_dropout", 0.0, 1.0, hi_inclusive=True)
        _float("vmf_reg1", 0.0, float("inf"), hi_inclusive=True)
        _float("vmf_reg2", 0.0, float("inf"), hi_inclusive=True)
        if self.vmf_reg2 <= 0:
            raise ValueError(f"LMConfig.vmf_reg2 must be > 0 (it scales the e_hat.e(w) term), got {self.vmf_reg2}")
        _float("adaptive_div_value", 1.0, float("inf"), hi_inclusive=True)
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
        if not isinstance(self.cutoffs, tuple) or any(
            isinstance(c, bool) or not isinstance(c, int) for c in self.cutoffs
        ):
            raise ValueError(f"LMConfig.cutoffs must be a tuple of ints, got {self.cutoffs!r}")
        if self.output == "adaptive":
            v = self.target_vocab_size
            if not self.cutoffs:
                raise ValueError("LMConfig.cutoffs must not be empty for output='adaptive'")
            if list(self.cutoffs) != sorted(set(self.cutoffs)) or self.cutoffs[0] <= 0 or self.cutoffs[-1] >= v:
                raise ValueError(
                    f"LMConfig.cutoffs must be strictly increasing ints in (0, {v}) for an output "
                    f"vocabulary of {v} rows, got {self.cutoffs}. Fix: pass smaller cutoffs, "
                    f"e.g. cutoffs=({max(1, v // 10)},) for a small vocabulary."
                )

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


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def reverse_padded(x: Tensor, lengths: Tensor) -> Tensor:
    """Reverse each row of a padded batch within its length.

    x: (B, T, ...) any dtype; lengths: (B,) ints in [0, T]. Position ``t <
    lengths[b]`` of row ``b`` receives ``x[b, lengths[b] - 1 - t]``; padding
    positions keep their values. The function is its own inverse.

    This is the backward-LM reversal on padded batches (the data pipeline
    reverses sentences before padding, which is the same thing);
    :meth:`DenseLSTMEncoder.encode_text_order` applies it to inputs and
    outputs.

    Raises:
        ValueError: shapes disagree or a length is outside [0, T].
    """
    if x.dim() < 2:
        raise ValueError(f"reverse_padded expects (B, T, ...), got shape {tuple(x.shape)}")
    B, T = x.shape[0], x.shape[1]
    lengths = torch.as_tensor(lengths, device=x.device).long()
    if lengths.shape != (B,):
        raise ValueError(f"lengths must have shape ({B},), got {tuple(lengths.shape)}")
    if B and (int(lengths.min()) < 0 or int(lengths.max()) > T):
        raise ValueError(f"lengths must be in [0, {T}], got {lengths.tolist()}")
    t = torch.arange(T, device=x.device).unsqueeze(0).expand(B, T)
    idx = torch.where(t < lengths.unsqueeze(1), lengths.unsqueeze(1) - 1 - t, t)
    idx = idx.view(B, T, *([1] * (x.dim() - 2))).expand_as(x)
    return torch.gather(x, 1, idx)


def dense_output_columns(keep: Sequence[int], embed_dim: int, hidden_dim: int) -> Tensor:
    """Column indices of the full dense output that survive :meth:`DenseLSTMEncoder.prune`.

    Returns a LongTensor of length ``embed_dim + len(keep) * hidden_dim``:
    the embedding columns, then the ``hidden_dim`` columns of each kept layer
    in increasing layer order. ``full_output[..., cols]`` equals the pruned
    encoder's output when the dropped layers' scales are 0.
    """
    cols = [torch.arange(embed_dim)]
    for layer in keep:
        start = embed_dim + int(layer) * hidden_dim
        cols.append(torch.arange(start, start + hidden_dim))
    return torch.cat(cols)


def _check_batch(token_ids: Tensor, lengths: Tensor) -> Tensor:
    if token_ids.dim() != 2:
        raise ValueError(f"token_ids must have shape (B, T), got {tuple(token_ids.shape)}")
    if token_ids.dtype not in (torch.long, torch.int32, torch.int64):
        raise ValueError(f"token_ids must be an integer tensor, got {token_ids.dtype}")
    B, T = token_ids.shape
    lengths = torch.as_tensor(lengths).long().cpu()
    if lengths.shape != (B,):
        raise ValueError(f"lengths must have shape ({B},), got {tuple(lengths.shape)}")
    if B and (int(lengths.min()) < 0 or int(lengths.max()) > T):
        raise ValueError(f"lengths must be in [0, T={T}], got {lengths.tolist()}")
    return lengths


def _check_vectors(token_ids: Tensor, input_vectors: Optional[Tensor], vector_mask: Optional[Tensor], embed_dim: int) -> None:
    """Raise ValueError unless ``input_vectors`` is (B, T, embed_dim) float and ``vector_mask`` (B, T) bool."""
    B, T = token_ids.shape
    if input_vectors is None or vector_mask is None:
        raise ValueError("input_vectors and vector_mask must be given together")
    if tuple(input_vectors.shape) != (B, T, embed_dim) or not input_vectors.is_floating_point():
        raise ValueError(
            f"input_vectors must be a float tensor of shape ({B}, {T}, {embed_dim}), got "
            f"{input_vectors.dtype} {tuple(input_vectors.shape)}"
        )
    if tuple(vector_mask.shape) != (B, T) or vector_mask.dtype != torch.bool:
        raise ValueError(f"vector_mask must be a bool tensor of shape ({B}, {T}), got {vector_mask.dtype} {tuple(vector_mask.shape)}")


# ---------------------------------------------------------------------------
# Encoder
# ---------------------------------------------------------------------------


class DenseLSTMEncoder(nn.Module):
    """Densely connected stack of L single-layer LSTMs (LD-Net section 3.2).

    Holds the input word embedding and the LSTM layers. See the module
    docstring for dropout, layer-wise dropout and padding semantics.

    Attributes:
        config: the :class:`LMConfig` (a copy; ``num_layers`` matches the
            layers actually present, also after :meth:`prune`).
        embedding: ``nn.Embedding(vocab_size, embed_dim)``.
        layers: ``nn.ModuleList`` of ``nn.LSTM``; layer ``l`` has
            ``input_size == embed_dim + l * hidden_dim``.
        output_dim: ``embed_dim + num_layers * hidden_dim``.
    """

    def __init__(self, config: LMConfig):
        super().__init__()
        config.validate()
        self.config = LMConfig.from_dict(config.to_dict())
        self.embed_dim = config.embed_dim
        self.hidden_dim = config.hidden_dim
        self.embedding = nn.Embedding(config.vocab_size, config.embed_dim)
        self.embedding.weight.requires_grad_(not config.freeze_input)
        self.layers = nn.ModuleList(
            nn.LSTM(config.embed_dim + i * config.hidden_dim, config.hidden_dim, batch_first=True)
            for i in range(config.num_layers)
        )
        self.dropout = nn.Dropout(config.dropout)
        self.layer_dropout = float(config.layer_dropout)
        h = config.hidden_dim
        with torch.no_grad():
            for lstm in self.layers:
                lstm.bias_ih_l0[h : 2 * h].fill_(1.0)
                lstm.bias_hh_l0[h : 2 * h].fill_(0.0)

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def output_dim(self) -> int:
        return self.embed_dim + self.num_layers * self.hidden_dim

    def layer_input_sizes(self) -> List[int]:
        """``input_size`` of every LSTM layer (``embed_dim + l * hidden_dim``)."""
        return [lstm.input_size for lstm in self.layers]

    # -- forward -------------------------------------------------------------
    def _layer_keep(self, device: torch.device) -> Optional[Tensor]:
        """Per-layer multipliers of the deep path, or None (no layer dropout)."""
        p = self.layer_dropout
        if not self.training or p <= 0.0 or self.num_layers < 2:
            return None
        if p >= 1.0:
            return torch.zeros(self.num_layers, device=device)
        keep = (torch.rand(self.num_layers) >= p).float() / (1.0 - p)
        return keep.to(device)

    def forward_packed(
        self,
        token_ids: Tensor,
        lengths: Tensor,
        *,
        layer_scales: Optional[Tensor] = None,
        input_vectors: Optional[Tensor] = None,
        vector_mask: Optional[Tensor] = None,
    ) -> PackedSequence:
        """Encode and return a ``PackedSequence`` of dense outputs.

        Same arguments as :meth:`forward`; every row must have length >= 1.
        ``result.data`` has shape (sum(lengths), output_dim).
        """
        lengths = _check_batch(token_ids, lengths)
        if layer_scales is not None and tuple(layer_scales.shape) != (self.num_layers,):
            raise ValueError(
                f"layer_scales must have shape ({self.num_layers},), got {tuple(layer_scales.shape)}"
            )
        emb = self.embedding(token_ids)  # (B, T, E)
        if input_vectors is not None:
            _check_vectors(token_ids, input_vectors, vector_mask, self.embed_dim)
            emb = torch.where(vector_mask.unsqueeze(-1), input_vectors.to(emb.dtype), emb)  # (B, T, E)
        emb = self.dropout(emb)
        packed = pack_padded_sequence(emb, lengths, batch_first=True, enforce_sorted=False)
        x = packed.data
        keep = self._layer_keep(x.device)
        outputs = [x]  # the output concatenation [x; h_0; ...]
        deep = [x]  # the inputs of the next layer [x; h_0 * m_0; ...]
        for i, lstm in enumerate(self.layers):
            inp = deep[0] if len(deep) == 1 else torch.cat(deep, dim=-1)
            h, _ = lstm(packed._replace(data=inp))
            h = self.dropout(h.data)
            if layer_scales is not None:
                h = h * layer_scales[i].to(h.dtype)
            outputs.append(h)
            if i + 1 < self.num_layers:
                deep.append(h if keep is None else h * keep[i])
        data = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=-1)
        return packed._replace(data=data)

    def forward(
        self,
        token_ids: Tensor,
        lengths: Tensor,
        *,
        layer_scales: Optional[Tensor] = None,
        input_vectors: Optional[Tensor] = None,
        vector_mask: Optional[Tensor] = None,
    ) -> Tensor:
        """Dense contextual representations.

        Args:
            token_ids: (B, T) int64 ids in ``[0, vocab_size)``.
            lengths: (B,) ints in ``[0, T]``; positions ``t >= lengths[b]`` are
                padding and never influence real positions.
            layer_scales: optional (L,) float tensor; ``h_l`` is multiplied by
                ``layer_scales[l]`` in the output and in deeper layers' inputs
                (LD-Net section 3.3). Gradients flow to it.
            input_vectors: optional (B, T, embed_dim) float tensor, with
                ``vector_mask`` (B, T) bool: where the mask is True, x_t is
                this vector instead of the embedding row of ``token_ids``
                (open-vocabulary input for an LM whose input embedding is a
                frozen pretrained table, e.g. the GloVe vector of a word
                outside the LM vocabulary; ELMo-C section 3 keeps the input
                embedding fixed). Both or neither must be given.

        Returns:
            (B, T, embed_dim + L * hidden_dim) float tensor,
            ``[x_t; h_0,t; ...; h_{L-1},t]``; exactly 0 at padding positions.

        Raises:
            ValueError: bad shapes, dtypes or lengths.
        """
        lengths = _check_batch(token_ids, lengths)
        B, T = token_ids.shape
        nonempty = lengths > 0
        vec = dict(input_vectors=input_vectors, vector_mask=vector_mask)
        if bool(nonempty.all()):
            packed = self.forward_packed(token_ids, lengths, layer_scales=layer_scales, **vec)
            out, _ = pad_packed_sequence(packed, batch_first=True, total_length=T)
            return out
        out = self.embedding.weight.new_zeros(B, T, self.output_dim)
        if bool(nonempty.any()):
            rows = nonempty.nonzero().squeeze(1)
            if input_vectors is not None:
                _check_vectors(token_ids, input_vectors, vector_mask, self.embed_dim)
                vec = {k: v[rows.to(v.device)] for k, v in vec.items()}
            sub = self.forward(
                token_ids[rows.to(token_ids.device)], lengths[rows], layer_scales=layer_scales, **vec
            )
            out = out.index_copy(0, rows.to(out.device), sub)
        return out

    def encode_text_order(
        self,
        token_ids: Tensor,
        lengths: Tensor,
        *,
        layer_scales: Optional[Tensor] = None,
        input_vectors: Optional[Tensor] = None,
        vector_mask: Optional[Tensor] = None,
    ) -> Tensor:
        """Encode in the LM's direction, returning outputs aligned with the input order.

        For ``config.direction == "forward"`` this is :meth:`forward`. For
        ``"backward"`` the rows are reversed with :func:`reverse_padded`
        (``input_vectors`` and ``vector_mask`` with them), encoded, and the
        outputs reversed back, so position ``t`` of the result summarises
        tokens ``t .. len-1`` of the original row.
        """
        if self.config.direction == "forward":
            return self.forward(
                token_ids, lengths, layer_scales=layer_scales, input_vectors=input_vectors, vector_mask=vector_mask
            )
        lengths_t = torch.as_tensor(lengths).long()
        rev = reverse_padded(token_ids, lengths_t.to(token_ids.device))
        if input_vectors is not None:
            _check_vectors(token_ids, input_vectors, vector_mask, self.embed_dim)
            input_vectors = reverse_padded(input_vectors, lengths_t.to(input_vectors.device))
            vector_mask = reverse_padded(vector_mask, lengths_t.to(vector_mask.device))
        out = self.forward(rev, lengths_t, layer_scales=layer_scales, input_vectors=input_vectors, vector_mask=vector_mask)
        return reverse_padded(out, lengths_t.to(out.device))

    # -- pruning ------------------------------------------------------------
    def output_columns(self, keep: Sequence[int]) -> Tensor:
        """Columns of this encoder's output kept by ``prune(keep)``; see :func:`dense_output_columns`."""
        return dense_output_columns(self._check_keep(keep), self.embed_dim, self.hidden_dim)

    def _check_keep(self, keep: Sequence[int]) -> List[int]:
        keep = [int(k) for k in keep]
        if keep != sorted(set(keep)) or any(k < 0 or k >= self.num_layers for k in keep):
            raise ValueError(
                f"keep must be strictly increasing layer indices in [0, {self.num_layers}), got {keep}"
            )
        return keep

    def prune(self, keep: Sequence[int]) -> "DenseLSTMEncoder":
        """Return a new encoder with only the layers ``keep`` (LD-Net section 3.3).

        The embedding is copied; kept layer ``keep[j]`` keeps its recurrent
        weights and biases, and of its input-to-hidden weight only the columns
        that read ``x`` and the kept earlier layers. Equivalent to the full
        encoder run with ``layer_scales`` 0 for the dropped layers, restricted
        to :meth:`output_columns` (kept layers' scales, if any, must then be
        passed as ``layer_scales[keep]``).

        Raises:
            ValueError: ``keep`` is not strictly increasing or out of range.
        """
        keep = self._check_keep(keep)
        new = DenseLSTMEncoder(self.config.replace(num_layers=len(keep)))
        new.train(self.training)
        E, H = self.embed_dim, self.hidden_dim
        with torch.no_grad():
            new.embedding.weight.copy_(self.embedding.weight)
            new.embedding.weight.requires_grad_(self.embedding.weight.requires_grad)
            for j, layer in enumerate(keep):
                src, dst = self.layers[layer], new.layers[j]
                cols = dense_output_columns(keep[:j], E, H).to(src.weight_ih_l0.device)
                dst.weight_ih_l0.copy_(src.weight_ih_l0[:, cols])
                dst.weight_hh_l0.copy_(src.weight_hh_l0)
                dst.bias_ih_l0.copy_(src.bias_ih_l0)
                dst.bias_hh_l0.copy_(src.bias_hh_l0)
        return new.to(self.embedding.weight.device)

    # -- cost ---------------------------------------------------------------------
    def multiply_adds_per_token(self) -> int:
        """Multiply-adds of one token through the LSTM stack (inference).

        Counts only the gate matrix products: ``4 * h * (in_l + h)`` per layer
        (input-to-hidden and hidden-to-hidden). Not counted: the embedding
        lookup (no arithmetic), bias additions, gate non-linearities and the
        element-wise cell update (O(h) per layer, under 1% here), and
        concatenation/dropout (data movement).
        """
        h = self.hidden_dim
        return sum(4 * h * (lstm.input_size + h) for lstm in self.layers)


# ---------------------------------------------------------------------------
# Language model
# ---------------------------------------------------------------------------


@dataclass
class LMOutput:
    """Result of :meth:`DenseLSTMLM.forward`.

    loss: scalar tensor, ``loss_sum / max(n_targets, 1)`` (nats per counted
        target for softmax/adaptive; the cosine or NLLvMF value otherwise).
    loss_sum: scalar tensor, sum over counted targets.
    n_targets: number of counted targets (python int).
    """

    loss: Tensor
    loss_sum: Tensor
    n_targets: int


class DenseLSTMLM(nn.Module):
    """LD-Net dense LSTM language model: encoder + (projection) + output layer.

    Args:
        config: an :class:`LMConfig`.
        target_vectors: (``config.target_vocab_size``, ``config.target_dim``) float
            tensor of pretrained target embeddings (e.g. GloVe rows of the
            output vocabulary, see
            :func:`spacy_ldnet.lm.outputs.glove_target_table`); required for
            ``output in ("cosine", "vmf")``, ignored otherwise. All-zero rows
            mean "no vector" (excluded from the loss) unless ``has_vector`` is
            given.
        has_vector: optional (``config.target_vocab_size``,) bool tensor.

    Attributes:
        encoder: :class:`DenseLSTMEncoder`.
        proj: ``nn.Linear(encoder.output_dim, proj_dim)`` or ``None``.
        output_layer: one of the classes of :mod:`spacy_ldnet.lm.outputs`.

    Raises:
        ValueError: invalid config, missing or mis-shaped target vectors.
    """

    def __init__(
        self,
        config: LMConfig,
        *,
        target_vectors: Optional[Tensor] = None,
        has_vector: Optional[Tensor] = None,
    ):
        super().__init__()
        from .outputs import build_output_layer

        config.validate()
        self.config = LMConfig.from_dict(config.to_dict())
        self.encoder = DenseLSTMEncoder(self.config)
        in_dim = self.encoder.output_dim
        if self.config.proj_dim > 0:
            self.proj: Optional[nn.Linear] = nn.Linear(in_dim, self.config.proj_dim)
            in_dim = self.config.proj_dim
        else:
            self.proj = None
        self.output_layer = build_output_layer(
            self.config, in_dim, target_vectors=target_vectors, has_vector=has_vector
        )

    # -- embeddings -------------------------------------------------------------
    def set_input_embeddings(self, table: Tensor, freeze: bool) -> None:
        """Copy ``table`` (vocab_size, embed_dim) into the input embedding.

        ``freeze=True`` stops its gradient (ELMo-C keeps the input embedding
        fixed) and records ``config.freeze_input``; optimisers should then be
        built over ``[p for p in model.parameters() if p.requires_grad]``.

        Raises:
            ValueError: wrong shape.
        """
        table = torch.as_tensor(table)
        weight = self.encoder.embedding.weight
        if tuple(table.shape) != tuple(weight.shape):
            raise ValueError(
                f"input embedding table must have shape {tuple(weight.shape)} "
                f"(vocab_size, embed_dim), got {tuple(table.shape)}"
            )
        with torch.no_grad():
            weight.copy_(table.to(weight.dtype))
        weight.requires_grad_(not freeze)
        self.config.freeze_input = bool(freeze)
        self.encoder.config.freeze_input = bool(freeze)

    # -- forward -------------------------------------------------------------------
    def _hidden(self, enc: Tensor) -> Tensor:
        return enc if self.proj is None else self.proj(enc)

    def _select(
        self,
        token_ids: Tensor,
        lengths: Tensor,
        target_mask: Optional[Tensor],
        layer_scales: Optional[Tensor],
    ) -> Tuple[Tensor, Tensor]:
        lengths_cpu = _check_batch(token_ids, lengths)
        B, T = token_ids.shape
        enc = self.encoder(token_ids, lengths_cpu, layer_scales=layer_scales)
        mask = torch.arange(T).unsqueeze(0) < lengths_cpu.unsqueeze(1)
        mask = mask.to(enc.device)
        if target_mask is not None:
            if tuple(target_mask.shape) != (B, T):
                raise ValueError(f"target_mask must have shape ({B}, {T}), got {tuple(target_mask.shape)}")
            mask = mask & target_mask.to(device=enc.device, dtype=torch.bool)
        return enc, mask

    def forward(
        self,
        token_ids: Tensor,
        lengths: Tensor,
        targets: Tensor,
        *,
        target_mask: Optional[Tensor] = None,
        layer_scales: Optional[Tensor] = None,
    ) -> LMOutput:
        """Language-model loss.

        Args:
            token_ids: (B, T) input ids.
            lengths: (B,) real lengths; positions beyond are ignored.
            targets: (B, T) int64 target ids (normally the next token) in
                ``[0, config.target_vocab_size)``; negative ids are ignored.
            target_mask: optional (B, T) bool; False excludes a position.
            layer_scales: passed to the encoder.

        A position is *counted* when it is inside the length, ``target_mask``
        is True, the target is >= 0, and (continuous outputs) the target word
        has a pretrained vector (``output_layer.has_vector``).

        Returns:
            :class:`LMOutput` with the mean loss over counted targets, the sum
            and the count.

        Raises:
            ValueError: bad shapes, or a counted target outside the target
                vocabulary.
        """
        B, T = token_ids.shape
        if tuple(targets.shape) != (B, T):
            raise ValueError(f"targets must have shape ({B}, {T}), got {tuple(targets.shape)}")
        enc, mask = self._select(token_ids, lengths, target_mask, layer_scales)
        targets = targets.to(enc.device).long()
        mask = mask & (targets >= 0)
        tgt = targets[mask]
        if tgt.numel() and int(tgt.max()) >= self.config.target_vocab_size:
            raise ValueError(
                f"target id {int(tgt.max())} is outside the target vocabulary of "
                f"{self.config.target_vocab_size} rows; map it to <unk> or mask it."
            )
        hidden = enc[mask]
        valid = self.output_layer.valid_targets(tgt)
        if not bool(valid.all()):
            hidden, tgt = hidden[valid], tgt[valid]
        n = int(tgt.numel())
        loss_sum = self.output_layer(self._hidden(hidden), tgt)
        return LMOutput(loss=loss_sum / max(n, 1), loss_sum=loss_sum, n_targets=n)

    def log_probs(
        self,
        token_ids: Tensor,
        lengths: Tensor,
        *,
        target_mask: Optional[Tensor] = None,
        layer_scales: Optional[Tensor] = None,
    ) -> Tensor:
        """Normalised next-word log-probabilities (softmax / adaptive only).

        Returns:
            (N, n_targets) float tensor, one row per real position (``t <
            lengths[b]`` and ``target_mask`` True) in row-major (b, t) order;
            ``exp`` of each row sums to 1.

        Raises:
            ValueError: the output layer is continuous (it defines no
                distribution over words).
        """
        if not hasattr(self.output_layer, "log_prob"):
            raise ValueError(
                f"log_probs needs a softmax or adaptive output layer, this model uses "
                f"output={self.config.output!r}"
            )
        enc, mask = self._select(token_ids, lengths, target_mask, layer_scales)
        return self.output_layer.log_prob(self._hidden(enc[mask]))

    # -- pruning / accounting ------------------------------------------------------
    def prune(self, keep: Sequence[int]) -> "DenseLSTMLM":
        """LM whose encoder keeps only layers ``keep`` (see :meth:`DenseLSTMEncoder.prune`).

        The first linear map reading the dense output (the projection, or the
        output layer) keeps only the matching input columns, so the pruned LM
        equals the full LM run with ``layer_scales`` 0 for the dropped layers.
        """
        encoder = self.encoder.prune(keep)
        cols = self.encoder.output_columns(keep)
        new = DenseLSTMLM.__new__(DenseLSTMLM)
        nn.Module.__init__(new)
        new.config = encoder.config
        new.encoder = encoder
        import copy

        if self.proj is not None:
            proj = nn.Linear(len(cols), self.proj.out_features).to(self.proj.weight.device)
            with torch.no_grad():
                proj.weight.copy_(self.proj.weight[:, cols.to(self.proj.weight.device)])
                proj.bias.copy_(self.proj.bias)
            new.proj = proj
            new.output_layer = copy.deepcopy(self.output_layer)
        else:
            new.proj = None
            new.output_layer = self.output_layer.slice_inputs(cols)
        new.train(self.training)
        return new

    def parameter_counts(self) -> Dict[str, int]:
        """Parameter counts: ``encoder`` (LSTM layers), ``input_embedding``,
        ``output_layer`` (projection + output layer), ``total``, ``trainable``.
        Frozen buffers (the continuous target table) are not parameters; see
        :meth:`summary`."""
        enc = sum(p.numel() for p in self.encoder.layers.parameters())
        emb = self.encoder.embedding.weight.numel()
        out = sum(p.numel() for p in self.output_layer.parameters())
        if self.proj is not None:
            out += sum(p.numel() for p in self.proj.parameters())
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return {
            "encoder": enc,
            "input_embedding": emb,
            "output_layer": out,
            "total": enc + emb + out,
            "trainable": trainable,
        }

    def summary(self) -> Dict[str, Any]:
        """JSON-able description used by ``spacy-ldnet lm-info``."""
        c = self.config
        table = getattr(self.output_layer, "target_vectors", None)
        has_vec = getattr(self.output_layer, "has_vector", None)
        return {
            "direction": c.direction,
            "output": c.output,
            "num_layers": self.encoder.num_layers,
            "embed_dim": c.embed_dim,
            "hidden_dim": c.hidden_dim,
            "encoder_output_dim": self.encoder.output_dim,
            "proj_dim": c.proj_dim,
            "layer_input_sizes": self.encoder.layer_input_sizes(),
            "vocab_size": c.vocab_size,
            "output_vocab_size": c.target_vocab_size,
            "cutoffs": list(c.cutoffs) if c.output == "adaptive" else None,
            "freeze_input": c.freeze_input,
            "dropout": c.dropout,
            "layer_dropout": c.layer_dropout,
            "parameters": self.parameter_counts(),
            "frozen_target_table": None
            if table is None
            else {
                "shape": list(table.shape),
                "rows_with_vector": int(has_vec.sum()) if has_vec is not None else None,
            },
            "multiply_adds_per_token": {"encoder": self.encoder.multiply_adds_per_token()},
        }
