"""Validation figures of a language model on the first targets of a text file."""
import math
import time

import torch

from ..config import CONTINUOUS_OUTPUTS
from ..data import Vocab
from .batches import iter_eval_batches
from .build import unwrap
from .settings import PretrainConfig


def length_mask(lengths: torch.Tensor, T: int) -> torch.Tensor:
    """(B, T) bool: position ``t < lengths[b]``."""
    return torch.arange(T, device=lengths.device)[None, :] < lengths[:, None]


@torch.no_grad()
def evaluate(model, cfg: PretrainConfig, vocab: Vocab, device) -> dict:
    """Validation figures on the first ``cfg.valid_tokens`` targets of ``cfg.valid``.

    softmax/adaptive: ``valid_loss`` (mean negative log-likelihood per target,
    nats, ``</s>`` and ``<unk>`` targets included) and ``valid_ppl = exp(loss)``.
    cosine/vmf: ``valid_loss`` (the output layer's own mean loss over targets
    that have a GloVe vector), plus ``nn_top1``/``nn_top10``: how often the
    predicted vector's nearest GloVe row (cosine similarity, among the
    output-vocabulary words that have GloVe vectors) is the true next word,
    measured on the first ``cfg.nn_eval_tokens`` of those targets. The
    nearest-neighbour accuracy is what a continuous-output LM can be asked
    without a normaliser; it rises as the predicted direction improves, like
    (but not comparable to) a perplexity.

    ``model``: a :class:`~spacy_ldnet.lm.model.DenseLSTMLM` (or its DDP
    wrapper); its training mode is restored afterwards.
    """
    m = unwrap(model)
    was_training = m.training
    m.eval()
    continuous = cfg.output_layer in CONTINUOUS_OUTPUTS
    totals = {"loss_sum": 0.0, "n_targets": 0, "n_all": 0, "nn_hits1": 0, "nn_hits10": 0, "nn_n": 0}
    t0 = time.time()
    for batch in iter_eval_batches(
        cfg.valid, vocab, direction=cfg.direction, batch_size=64, max_tokens=cfg.valid_tokens, max_len=cfg.max_len
    ):
        batch = batch.to(device)
        mask = length_mask(batch.lengths, batch.targets.shape[1])
        totals["n_all"] += int(mask.sum())
        if continuous:
            _continuous_batch(m, batch, mask, cfg.nn_eval_tokens, totals)
        else:
            out = m(batch.token_ids, batch.lengths, batch.targets, target_mask=mask)
            totals["loss_sum"] += float(out.loss_sum)
            totals["n_targets"] += int(out.n_targets)
    n_targets, n_all, nn_n = totals["n_targets"], totals["n_all"], totals["nn_n"]
    res = {"valid_loss": totals["loss_sum"] / max(1, n_targets), "valid_targets": n_targets, "valid_tokens_read": n_all}
    if continuous:
        res["valid_vector_target_fraction"] = n_targets / max(1, n_all)
        if nn_n:
            res.update(nn_top1=totals["nn_hits1"] / nn_n, nn_top10=totals["nn_hits10"] / nn_n, nn_tokens=nn_n)
    else:
        res["valid_ppl"] = math.exp(min(50.0, res["valid_loss"]))
    res["valid_seconds"] = time.time() - t0
    if was_training:
        m.train()
    return res


def _continuous_batch(m, batch, mask: torch.Tensor, nn_eval_tokens: int, totals: dict) -> None:
    """Add one batch's loss and nearest-neighbour hits of a continuous-output LM to ``totals``.

    Runs the pieces of :meth:`DenseLSTMLM.forward` to reuse the hidden states.
    """
    enc = m.encoder(batch.token_ids, batch.lengths)
    tgt = batch.targets[mask]
    hidden = enc[mask]
    valid = m.output_layer.valid_targets(tgt)
    hidden, tgt = hidden[valid], tgt[valid]
    if m.proj is not None:
        hidden = m.proj(hidden)
    totals["loss_sum"] += float(m.output_layer(hidden, tgt))
    totals["n_targets"] += int(tgt.numel())
    if totals["nn_n"] < nn_eval_tokens and tgt.numel():
        _, top = m.output_layer.nearest(hidden, k=10)
        totals["nn_hits1"] += int((top[:, 0] == tgt).sum())
        totals["nn_hits10"] += int((top == tgt[:, None]).any(-1).sum())
        totals["nn_n"] += int(tgt.numel())
