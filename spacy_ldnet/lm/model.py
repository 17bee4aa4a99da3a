"""The LD-Net dense LSTM language model: encoder, optional projection, output layer.

Depends on torch only (no spaCy, no thinc), so it can be read, tested and
exported on its own.

Sources
-------
* Liu et al. (EMNLP 2018), LD-Net: the densely connected encoder
  (:mod:`spacy_ldnet.lm.encoder`) and layer pruning (section 3.3).
* Li et al. (TACL 2019), ELMo-C: the continuous (embedding-prediction) output
  layer, see :mod:`spacy_ldnet.lm.outputs`.

Next-word prediction: the *full dense output* ``[x_t; h_0,t; ...; h_{L-1},t]``
at position ``t`` predicts the target at ``t`` (normally token ``t + 1``;
building targets is the data pipeline's job). If ``config.proj_dim > 0`` a
linear projection to ``proj_dim`` is applied first (cheaper softmax); with the
default ``proj_dim = 0`` the output layer reads the dense output directly (the
continuous output layer has its own linear map to the target-embedding width).

This module also re-exports :class:`LMConfig` (:mod:`spacy_ldnet.lm.config`)
and the encoder names (:mod:`spacy_ldnet.lm.encoder`).
"""
import copy
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from .config import CONTINUOUS_OUTPUTS, DIRECTIONS, OUTPUT_TYPES, LMConfig
from .encoder import DenseLSTMEncoder, _check_batch, dense_output_columns, reverse_padded
from .outputs import build_output_layer

__all__ = [
    "CONTINUOUS_OUTPUTS",
    "DIRECTIONS",
    "OUTPUT_TYPES",
    "DenseLSTMEncoder",
    "DenseLSTMLM",
    "LMConfig",
    "LMOutput",
    "dense_output_columns",
    "reverse_padded",
]


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
