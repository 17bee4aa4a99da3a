"""Output layers of the dense LSTM LM: full softmax, adaptive softmax, continuous (ELMo-C).

All layers share one interface::

    loss_sum = layer(hidden, targets)   # hidden (N, D) float, targets (N,) int64 -> scalar
    mask = layer.valid_targets(targets) # (N,) bool: which targets the layer can score

The caller (:class:`spacy_ldnet.lm.model.DenseLSTMLM`) filters targets with
``valid_targets`` first and counts them, so ``loss_sum / n_targets`` is the
mean loss.

Sources
-------
* Adaptive softmax: Grave, Joulin, Cissé, Grangier & Jégou (ICML 2017),
  through ``torch.nn.AdaptiveLogSoftmaxWithLoss``.
* Continuous outputs: Li et al. (TACL 2019, ELMo-C) section 3, using the
  losses of Kumar & Tsvetkov (ICLR 2019), "Von Mises-Fisher Loss for Training
  Sequence to Sequence Models with Continuous Outputs", sections 3-4.

Words without a pretrained vector (continuous outputs)
------------------------------------------------------
The frozen target table has one row per target-vocabulary entry; rows of
words missing from GloVe (and special tokens such as ``<unk>``, ``<s>``,
``</s>``) are zero and marked ``has_vector[row] = False``. Such targets are
*excluded from the loss* (not counted in ``n_targets``): learning a vector for
them would let the model and the target collapse together. The data pipeline
reports the coverage (share of corpus targets with a vector).
"""
import copy
import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# ---------------------------------------------------------------------------
# vMF normaliser
# ---------------------------------------------------------------------------


def _log_bessel_series_sum(v: float, kappa: Tensor) -> Tensor:
    """log sum_j (kappa/2)^(2j) / (j! Gamma(j + v + 1)), float64, any kappa >= 0.

    ``I_v(kappa) = (kappa/2)^v * exp(result)``. The series converges for all
    kappa; ``ceil(max kappa) + 60`` terms cover the peak (near ``j ~ kappa/2``)
    and its tail to well below float64 precision.
    """
    k = kappa.double()
    n_terms = int(math.ceil(float(k.detach().max()))) + 60 if k.numel() else 1
    j = torch.arange(1, n_terms, dtype=torch.float64, device=k.device)
    log_half = torch.log(k / 2).unsqueeze(-1)
    terms = 2 * j * log_half - torch.lgamma(j + 1) - torch.lgamma(j + v + 1)
    first = torch.full_like(k, -math.lgamma(v + 1)).unsqueeze(-1)
    return torch.logsumexp(torch.cat([first, terms], dim=-1), dim=-1)


def vmf_log_normaliser(kappa: Tensor, m: int, exact: bool = False) -> Tensor:
    """log C_m(kappa), the normaliser of the von Mises-Fisher density on S^{m-1}.

    ``C_m(kappa) = kappa^v / ((2 pi)^(m/2) I_v(kappa))`` with ``v = m/2 - 1``
    and ``I_v`` the modified Bessel function of the first kind.

    Args:
        kappa: tensor of concentrations (>= 0), any shape.
        m: dimension of the embedding space (>= 2; >= 3 for the approximation).
        exact: ``True``: the reference value, computed from the power series of
            ``I_v`` in float64 (cost O(max kappa) per element; for tests and
            evaluation, differentiable by autograd). ``False``: the
            approximation Kumar & Tsvetkov (2019, section 4) use for training,

                log C_m(kappa) ~= (v - 1) log(v - 1 + s) - s,
                s = sqrt((v + 1)^2 + kappa^2),

            whose derivative ``-kappa / (v - 1 + s)`` is the Ruiz-Antolin &
            Segura (2016) bound of the exact derivative ``-I_{v+1}/I_v``. It
            equals the exact value only *up to an additive constant that
            depends on m* (irrelevant for training), and is tight for large m.

    Returns:
        Tensor of the same shape (and dtype) as ``kappa``, in nats.

    Raises:
        ValueError: m too small.
    """
    if m < 2 or (not exact and m < 3):
        raise ValueError(f"vmf_log_normaliser needs m >= {2 if exact else 3}, got {m}")
    v = m / 2.0 - 1.0
    if exact:
        log_c = v * math.log(2.0) - (m / 2.0) * math.log(2 * math.pi) - _log_bessel_series_sum(v, kappa)
        return log_c.to(kappa.dtype)
    s = torch.sqrt((v + 1.0) ** 2 + kappa * kappa)
    return (v - 1.0) * torch.log(v - 1.0 + s) - s


# ---------------------------------------------------------------------------
# Output layers
# ---------------------------------------------------------------------------


class OutputLayer(nn.Module):
    """Base class: ``in_dim``, ``vocab_size``, ``valid_targets`` and ``slice_inputs``."""

    in_dim: int
    vocab_size: int

    def valid_targets(self, targets: Tensor) -> Tensor:
        """(N,) bool: targets this layer scores (all of them, by default)."""
        return torch.ones_like(targets, dtype=torch.bool)

    def slice_inputs(self, cols: Tensor) -> "OutputLayer":
        """Copy that reads only the input columns ``cols`` (used by LM pruning)."""
        raise NotImplementedError


def _sliced_linear(linear: nn.Linear, cols: Tensor) -> nn.Linear:
    new = nn.Linear(len(cols), linear.out_features, bias=linear.bias is not None)
    new = new.to(device=linear.weight.device, dtype=linear.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(linear.weight[:, cols.to(linear.weight.device)])
        if linear.bias is not None:
            new.bias.copy_(linear.bias)
    return new


class SoftmaxOutput(OutputLayer):
    """Full softmax over the target vocabulary (baseline).

    ``logits = W hidden + b`` with ``W`` (vocab_size, in_dim); loss = summed
    cross-entropy in nats. Cost: ``in_dim * vocab_size`` multiply-adds per
    target.
    """

    def __init__(self, in_dim: int, vocab_size: int):
        super().__init__()
        self.in_dim, self.vocab_size = int(in_dim), int(vocab_size)
        self.linear = nn.Linear(self.in_dim, self.vocab_size)

    def forward(self, hidden: Tensor, targets: Tensor) -> Tensor:
        """hidden (N, in_dim), targets (N,) -> scalar summed NLL (nats)."""
        if targets.numel() == 0:
            return hidden.sum() * 0.0
        return F.cross_entropy(self.linear(hidden), targets, reduction="sum")

    def log_prob(self, hidden: Tensor) -> Tensor:
        """(N, in_dim) -> (N, vocab_size) normalised log-probabilities."""
        return F.log_softmax(self.linear(hidden), dim=-1)

    def slice_inputs(self, cols: Tensor) -> "SoftmaxOutput":
        new = copy.deepcopy(self)
        new.linear = _sliced_linear(self.linear, cols)
        new.in_dim = len(cols)
        return new


class AdaptiveSoftmaxOutput(OutputLayer):
    """Adaptive softmax (Grave et al. 2017): ``torch.nn.AdaptiveLogSoftmaxWithLoss``.

    Args:
        in_dim: input width.
        vocab_size: target vocabulary size; ids must be sorted by decreasing
            frequency (the head holds ids ``< cutoffs[0]``).
        cutoffs: strictly increasing, in ``(0, vocab_size)``.
        div_value: tail projection widths shrink by this factor per cluster.

    Raises:
        ValueError: invalid cutoffs, or a tail projection width
            ``in_dim // div_value ** (i + 1)`` below 1.
    """

    def __init__(self, in_dim: int, vocab_size: int, cutoffs: Sequence[int], div_value: float = 4.0):
        super().__init__()
        cutoffs = [int(c) for c in cutoffs]
        if not cutoffs or cutoffs != sorted(set(cutoffs)) or cutoffs[0] <= 0 or cutoffs[-1] >= vocab_size:
            raise ValueError(
                f"adaptive softmax cutoffs must be strictly increasing in (0, {vocab_size}), got {cutoffs}"
            )
        tail_widths = [int(in_dim // (div_value ** (i + 1))) for i in range(len(cutoffs))]
        if min(tail_widths) < 1:
            raise ValueError(
                f"adaptive softmax: input width {in_dim} with div_value={div_value} gives tail "
                f"projection widths {tail_widths}; every width must be >= 1. Fix: fewer cutoffs, a "
                f"smaller div_value or a wider input."
            )
        self.in_dim, self.vocab_size = int(in_dim), int(vocab_size)
        self.asm = nn.AdaptiveLogSoftmaxWithLoss(
            self.in_dim, self.vocab_size, cutoffs, div_value=float(div_value), head_bias=True
        )

    def forward(self, hidden: Tensor, targets: Tensor) -> Tensor:
        """hidden (N, in_dim), targets (N,) -> scalar summed NLL (nats)."""
        if targets.numel() == 0:
            return hidden.sum() * 0.0
        return -self.asm(hidden, targets).output.sum()

    def log_prob(self, hidden: Tensor) -> Tensor:
        """(N, in_dim) -> (N, vocab_size) normalised log-probabilities."""
        return self.asm.log_prob(hidden)

    def slice_inputs(self, cols: Tensor) -> "AdaptiveSoftmaxOutput":
        new = copy.deepcopy(self)
        new.asm.head = _sliced_linear(self.asm.head, cols)
        for cluster in new.asm.tail:
            cluster[0] = _sliced_linear(cluster[0], cols)
        new.asm.in_features = len(cols)
        new.in_dim = len(cols)
        return new


class ContinuousOutput(OutputLayer):
    """Continuous output layer of ELMo-C (Li et al. 2019, section 3).

    A linear map predicts ``e_hat = W hidden + b`` (width ``target_dim``),
    compared with the frozen, unit-normalised pretrained embedding ``e(w)`` of
    the target word (GloVe 6B 50d). Losses per target:

    * ``"cosine"``: ``1 - cos(e_hat, e(w))`` (range [0, 2]).
    * ``"vmf"``: regularised NLLvMF (Kumar & Tsvetkov 2019, sections 3-4)::

          -log C_m(||e_hat||) + reg1 * ||e_hat|| - reg2 * e_hat . e(w)

      with ``log C_m`` from :func:`vmf_log_normaliser` (approximation, so the
      value is defined up to an additive constant and can be negative). The
      paper's "regularisation 1" is ``reg1 = lambda_1, reg2 = 1``, its
      "regularisation 2" ``reg1 = 0, reg2 = lambda_2``; plain NLLvMF is
      ``reg1 = 0, reg2 = 1``. Both terms are applied together here (config
      defaults lambda_1 = 0.02, lambda_2 = 0.1), which keeps ``||e_hat||``
      bounded: plain NLLvMF decreases without bound as ``||e_hat||`` grows
      along ``e(w)``.

    Args:
        in_dim: input width.
        target_vectors: (vocab_size, target_dim) float table; rows are
            unit-normalised on construction (zero rows stay zero).
        loss: ``"cosine"`` or ``"vmf"``.
        reg1, reg2: the NLLvMF lambda_1, lambda_2 (ignored for cosine).
        has_vector: optional (vocab_size,) bool; default: rows with non-zero
            norm. Targets without a vector are excluded (see module docstring).

    Buffers (saved in checkpoints): ``target_vectors`` (unit rows),
    ``has_vector``.

    Raises:
        ValueError: bad loss name, table shape or dimension.
    """

    def __init__(
        self,
        in_dim: int,
        target_vectors: Tensor,
        loss: str = "cosine",
        reg1: float = 0.02,
        reg2: float = 0.1,
        has_vector: Optional[Tensor] = None,
    ):
        super().__init__()
        if loss not in ("cosine", "vmf"):
            raise ValueError(f"ContinuousOutput loss must be 'cosine' or 'vmf', got {loss!r}")
        table = torch.as_tensor(target_vectors, dtype=torch.float32)
        if table.dim() != 2:
            raise ValueError(f"target_vectors must be 2-D (vocab, dim), got shape {tuple(table.shape)}")
        if loss == "vmf" and table.shape[1] < 3:
            raise ValueError(f"the vMF loss needs target_dim >= 3, got {table.shape[1]}")
        norms = table.norm(dim=1, keepdim=True)
        if has_vector is None:
            has_vector = norms.squeeze(1) > 0
        has_vector = torch.as_tensor(has_vector, dtype=torch.bool)
        if tuple(has_vector.shape) != (table.shape[0],):
            raise ValueError(f"has_vector must have shape ({table.shape[0]},), got {tuple(has_vector.shape)}")
        table = torch.where(norms > 0, table / norms.clamp_min(1e-12), table)
        self.in_dim, self.vocab_size = int(in_dim), int(table.shape[0])
        self.target_dim = int(table.shape[1])
        self.loss, self.reg1, self.reg2 = loss, float(reg1), float(reg2)
        self.linear = nn.Linear(self.in_dim, self.target_dim)
        self.register_buffer("target_vectors", table)
        self.register_buffer("has_vector", has_vector)

    def valid_targets(self, targets: Tensor) -> Tensor:
        return self.has_vector[targets]

    def predict(self, hidden: Tensor) -> Tensor:
        """(N, in_dim) -> (N, target_dim) predicted embeddings ``e_hat``."""
        return self.linear(hidden)

    def losses(self, hidden: Tensor, targets: Tensor) -> Tensor:
        """Per-target losses (N,); targets without a vector give 0."""
        pred = self.linear(hidden)
        gold = self.target_vectors[targets]
        if self.loss == "cosine":
            loss = 1.0 - F.cosine_similarity(pred, gold, dim=-1, eps=1e-8)
        else:
            kappa = torch.sqrt((pred * pred).sum(-1) + 1e-12)
            log_c = vmf_log_normaliser(kappa, self.target_dim)
            loss = -log_c + self.reg1 * kappa - self.reg2 * (pred * gold).sum(-1)
        return loss * self.has_vector[targets].to(loss.dtype)

    def forward(self, hidden: Tensor, targets: Tensor) -> Tensor:
        """hidden (N, in_dim), targets (N,) -> scalar summed loss."""
        if targets.numel() == 0:
            return hidden.sum() * 0.0
        return self.losses(hidden, targets).sum()

    def nearest(self, hidden: Tensor, k: int = 1) -> Tuple[Tensor, Tensor]:
        """Top-k target words by cosine to ``e_hat`` among rows with a vector.

        Returns (scores (N, k), ids (N, k)).
        """
        pred = F.normalize(self.linear(hidden), dim=-1)
        scores = pred @ self.target_vectors.t()
        scores = scores.masked_fill(~self.has_vector, float("-inf"))
        return scores.topk(k, dim=-1)

    def slice_inputs(self, cols: Tensor) -> "ContinuousOutput":
        new = copy.deepcopy(self)
        new.linear = _sliced_linear(self.linear, cols)
        new.in_dim = len(cols)
        return new


# ---------------------------------------------------------------------------
# Construction helpers
# ---------------------------------------------------------------------------


def build_output_layer(
    config, in_dim: int, target_vectors: Optional[Tensor] = None, has_vector: Optional[Tensor] = None
) -> OutputLayer:
    """Output layer for an :class:`~spacy_ldnet.lm.model.LMConfig`.

    Args:
        config: the LM config (``output``, ``cutoffs``, ``target_dim``, ...).
        in_dim: width of the representation fed to the layer.
        target_vectors: (target_vocab_size, target_dim) table, required for
            continuous outputs.
        has_vector: optional (target_vocab_size,) bool for continuous outputs.

    Raises:
        ValueError: unknown output type, missing or mis-shaped target table.
    """
    V = config.target_vocab_size
    if config.output == "softmax":
        return SoftmaxOutput(in_dim, V)
    if config.output == "adaptive":
        return AdaptiveSoftmaxOutput(in_dim, V, config.cutoffs, div_value=config.adaptive_div_value)
    if config.output in ("cosine", "vmf"):
        if target_vectors is None:
            raise ValueError(
                f"output={config.output!r} needs target_vectors of shape ({V}, {config.target_dim}), "
                f"e.g. from spacy_ldnet.lm.outputs.glove_target_table(vocab[:{V}])"
            )
        table = torch.as_tensor(target_vectors)
        if tuple(table.shape) != (V, config.target_dim):
            raise ValueError(
                f"target_vectors must have shape ({V}, {config.target_dim}) "
                f"(target_vocab_size, target_dim), got {tuple(table.shape)}"
            )
        return ContinuousOutput(
            in_dim, table, loss=config.output, reg1=config.vmf_reg1, reg2=config.vmf_reg2, has_vector=has_vector
        )
    raise ValueError(f"unknown output type {config.output!r}")


def glove_target_table(
    vocab: Sequence[str],
    *,
    glove: Optional[Tuple[List[str], "object"]] = None,
    lowercase: bool = True,
) -> Tuple[Tensor, Tensor]:
    """Rows of the GloVe table for each target word.

    Args:
        vocab: target vocabulary in row order (the first ``target_vocab_size``
            entries of the LM vocabulary).
        glove: ``(words, vectors)`` as returned by
            :func:`spacy_ldnet.glove.load_glove`; loaded if None.
        lowercase: look words up lower-cased (GloVe 6B is uncased).

    Returns:
        ``(table, has_vector)``: float32 (len(vocab), dim), zero rows for words
        without a vector; bool (len(vocab),).

    Raises:
        spacy_ldnet.glove.GloveNotFoundError: the GloVe package is missing.
    """
    if glove is None:
        from ..glove import load_glove

        glove = load_glove()
    words, vectors = glove
    index = {}
    for i, w in enumerate(words):
        index.setdefault(w, i)
    dim = int(vectors.shape[1])
    rows = [index.get(w.lower() if lowercase else w, -1) for w in vocab]
    has_vector = torch.tensor([r >= 0 for r in rows], dtype=torch.bool)
    table = torch.zeros(len(vocab), dim, dtype=torch.float32)
    found = [i for i, r in enumerate(rows) if r >= 0]
    if found:
        src = torch.as_tensor(vectors[[rows[i] for i in found]], dtype=torch.float32)
        table[torch.tensor(found)] = src
    return table, has_vector
