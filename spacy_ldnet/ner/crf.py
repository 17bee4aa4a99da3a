"""Linear-chain conditional random field over tag sequences, in plain torch.

This module imports torch and numpy only (no spaCy, no thinc), so it can be
tested and reused on its own; the spaCy model in :mod:`spacy_ldnet.ner` wraps it.

Model (Lafferty, McCallum & Pereira 2001; Lample et al. 2016, section 2.2;
LD-Net, Liu et al. 2018, section 4.1): for emissions ``E`` of shape (T, K) and
a tag path ``y_1 .. y_T``, the path score is

    s(y) = start[y_1] + sum_t E[t, y_t] + sum_{t>1} trans[y_{t-1}, y_t] + end[y_T]

and ``p(y | E) = exp(s(y)) / Z`` with ``Z`` the sum of ``exp(s(y'))`` over all
paths. Training minimises ``-log p(gold | E)``; inference takes the argmax path
(Viterbi). Scores are unnormalised log-potentials (nats).

Three parts: the log-likelihood (training; forward algorithm in log space),
decoding (Viterbi) and the marginals (forward-backward in probability space
with per-step scaling, Rabiner 1989, section V.A; Sutton & McCallum 2012, "An
Introduction to Conditional Random Fields", section 4.1): ``p(y_t = k | E)`` and the
probability of a segment of fixed tags (one entity's ``B-X I-X .. L-X``), summed
over the allowed paths, optionally at a temperature (scores divided by ``tau``,
Guo et al. 2017; the Viterbi path does not change).

Constraints: an optional bool mask of shape (K + 2, K + 2) (row/column ``K`` is
START, ``K + 1`` is END, as built by
:func:`spacy_ldnet.ner.tags.allowed_transitions`) marks the allowed
transitions. Every disallowed transition gets :data:`DISALLOWED_SCORE` added
to its score, in the partition function *and* in Viterbi, so ``Z`` is, to
float precision, a sum over allowed paths only and decoding never returns a
disallowed path while an allowed one exists. A large finite penalty is used
rather than ``-inf`` so that gradients stay finite.
"""
from typing import List, NamedTuple, Optional, Tuple, Union

import numpy
import torch
from torch import Tensor, nn

#: Score added to every disallowed transition (log-space, nats). exp(-1e4) is 0
#: in float32 and float64, so disallowed paths drop out of the partition sum.
DISALLOWED_SCORE = -10000.0

MaskLike = Union[Tensor, numpy.ndarray]


class Posterior(NamedTuple):
    """Forward-backward tables of one batch (:meth:`ConditionalRandomField.forward_backward`),
    nats. ``log_alpha[b, t, k]``: log-sum over the allowed paths of positions
    ``0 .. t`` ending in tag ``k``; ``log_beta[b, t, k]``: log-sum over their
    allowed continuations after ``t`` (to END). Meaningless at padding."""

    log_alpha: Tensor  #: (B, T, K)
    log_beta: Tensor  #: (B, T, K)
    log_z: Tensor  #: (B,) log partition function
    emissions: Tensor  #: (B, T, K) emission scores divided by the temperature
    transitions: Tensor  #: (K, K) constrained transition scores divided by the temperature
    mask: Tensor  #: (B, T) bool, True on real positions


class ConditionalRandomField(nn.Module):
    """Linear-chain CRF with learned start/transition/end scores.

    Sources: Lafferty et al. (2001) "Conditional Random Fields"; Lample et al.
    (2016) "Neural Architectures for Named Entity Recognition", section 2.2;
    Liu et al. (2018) "Efficient Contextualized Representation: Language Model
    Pruning for Sequence Labeling" (LD-Net), section 4.1.

    Shapes: ``B`` batch size, ``T`` padded sequence length, ``K`` number of
    tags. ``mask`` is a (B, T) bool tensor, True on the first ``length_b``
    positions of row ``b`` and False after (left-aligned); every length must be
    >= 1. ``mask=None`` means every position is real. Emissions may be float32
    or float64, on any device; the parameters are cast to the emissions' dtype
    and device on the fly (differentiably), and results come back in that
    dtype and on that device.

    Parameters:
        transitions: (K, K), ``transitions[i, j]`` is the score of tag ``i``
            followed by tag ``j``.
        start_transitions: (K,), score of starting a sequence with each tag.
        end_transitions: (K,), score of ending a sequence with each tag.

    Buffer ``constraint_mask`` (K + 2, K + 2) bool is *persistent*: it is part
    of the ``state_dict``, so a saved model reloads with the constraints it was
    trained under. Its shape depends on ``num_tags`` only, so a model built
    from the same ``num_tags`` (with or without a mask) can always load the
    state. It is all-True when no constraint is given.
    """

    def __init__(self, num_tags: int, constraint_mask: Optional[MaskLike] = None) -> None:
        """
        num_tags: K >= 1, the number of real tags.
        constraint_mask: optional bool (K + 2, K + 2) tensor or numpy array of
            allowed transitions (index K = START, K + 1 = END), e.g. from
            :func:`spacy_ldnet.ner.tags.allowed_transitions`. Rows into START
            and out of END are ignored.

        Raises:
            ValueError: ``num_tags < 1`` or the mask has the wrong shape.
        """
        super().__init__()
        if int(num_tags) != num_tags or num_tags < 1:
            raise ValueError(f"num_tags must be a positive integer, got {num_tags!r}.")
        self.num_tags = int(num_tags)
        self.transitions = nn.Parameter(torch.empty(self.num_tags, self.num_tags))
        self.start_transitions = nn.Parameter(torch.empty(self.num_tags))
        self.end_transitions = nn.Parameter(torch.empty(self.num_tags))
        full = (self.num_tags + 2, self.num_tags + 2)
        if constraint_mask is None:
            mask = torch.ones(full, dtype=torch.bool)
        else:
            if isinstance(constraint_mask, Tensor):
                mask = constraint_mask.detach().to(device="cpu", dtype=torch.bool)
            else:
                mask = torch.from_numpy(numpy.array(constraint_mask, dtype=bool))
            if tuple(mask.shape) != full:
                raise ValueError(
                    f"constraint_mask must have shape (num_tags + 2, num_tags + 2) = "
                    f"{full} (START and END last), got {tuple(mask.shape)}."
                )
        self.register_buffer("constraint_mask", mask.clone(), persistent=True)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Transitions ~ U(-0.1, 0.1) (small, to break symmetry); start/end = 0."""
        nn.init.uniform_(self.transitions, -0.1, 0.1)
        nn.init.zeros_(self.start_transitions)
        nn.init.zeros_(self.end_transitions)

    def extra_repr(self) -> str:
        n_allowed = int(self.constraint_mask[: self.num_tags, : self.num_tags].sum())
        return f"num_tags={self.num_tags}, allowed_transitions={n_allowed}/{self.num_tags ** 2}"

    # ------------------------------------------------------------------ helpers

    def _potentials(self, like: Tensor, temperature: float = 1.0) -> Tuple[Tensor, Tensor, Tensor]:
        """Constrained (start, transitions, end) in the dtype/device of ``like``;
        the learned scores are divided by ``temperature`` before the penalty is
        added, so disallowed transitions stay disallowed at any temperature."""
        K = self.num_tags
        dtype, device = like.dtype, like.device
        # (K + 2, K + 2): 0 where allowed, DISALLOWED_SCORE where not
        penalty = (~self.constraint_mask).to(device=device, dtype=dtype) * DISALLOWED_SCORE
        # (K,)
        start = self.start_transitions.to(device=device, dtype=dtype) / temperature + penalty[K, :K]
        # (K, K)
        trans = self.transitions.to(device=device, dtype=dtype) / temperature + penalty[:K, :K]
        # (K,)
        end = self.end_transitions.to(device=device, dtype=dtype) / temperature + penalty[:K, K + 1]
        return start, trans, end

    def _check(self, emissions: Tensor, mask: Optional[Tensor]) -> Tensor:
        """Validate emissions/mask; return the mask as (B, T) bool on emissions' device."""
        if emissions.dim() != 3:
            raise ValueError(
                f"emissions must have shape (batch, time, num_tags), got {tuple(emissions.shape)}."
            )
        B, T, K = emissions.shape
        if K != self.num_tags:
            raise ValueError(f"emissions has {K} tags in its last dimension, expected {self.num_tags}.")
        if not emissions.is_floating_point():
            raise ValueError(f"emissions must be a floating-point tensor, got {emissions.dtype}.")
        if mask is None:
            # (B, T)
            mask = torch.ones(B, T, dtype=torch.bool, device=emissions.device)
        else:
            if tuple(mask.shape) != (B, T):
                raise ValueError(
                    f"mask must have shape (batch, time) = {(B, T)}, got {tuple(mask.shape)}."
                )
            # (B, T)
            mask = (mask != 0).to(emissions.device)
        if B == 0:
            return mask
        if T == 0:
            raise ValueError("Every sequence must have length >= 1, got time dimension 0.")
        # (B,)
        empty = ~mask[:, 0]
        if bool(empty.any()):
            rows = torch.nonzero(empty).flatten().tolist()
            raise ValueError(f"Every sequence must have length >= 1; empty sequence(s) at batch index {rows}.")
        # (B, T - 1): a real position right after a padding one
        gaps = mask[:, 1:] & ~mask[:, :-1]
        if bool(gaps.any()):
            rows = torch.nonzero(gaps.any(dim=1)).flatten().tolist()
            raise ValueError(
                f"mask must be left-aligned (True on the first length_b positions, then False); "
                f"not so at batch index {rows}."
            )
        return mask

    # ------------------------------------------------------- log-likelihood

    def log_partition(self, emissions: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        """Log partition function ``log Z`` per sequence (forward algorithm).

        emissions: (B, T, K) float, unnormalised tag scores per position.
        mask: (B, T) bool, left-aligned, every length >= 1 (None: all True).

        Returns: (B,) tensor, ``log sum_y exp(s(y))`` over the allowed paths of
            each sequence's length, in nats; differentiable.

        Raises: ValueError on bad shapes, an empty sequence or a mask that is
            not left-aligned.
        """
        mask = self._check(emissions, mask)
        B, T, K = emissions.shape
        if B == 0:
            return emissions.new_zeros(0)
        start, trans, end = self._potentials(emissions)
        # (B, T, K) -> (B, K): the last real position's alpha (padding repeats it)
        alpha = self._forward_alphas(emissions, mask, start, trans)[:, -1]
        # (B, K) -> (B,)
        return torch.logsumexp(alpha + end.unsqueeze(0), dim=1)

    @staticmethod
    def _forward_alphas(emissions: Tensor, mask: Tensor, start: Tensor, trans: Tensor) -> Tensor:
        """Forward recursion in log space, differentiable: (B, T, K)
        ``log_alpha`` (see :class:`Posterior`); at a padded position each row
        repeats its last real one."""
        T = emissions.shape[1]
        # (B, K): log-sum of all paths of length 1 ending in each tag
        alpha = start.unsqueeze(0) + emissions[:, 0]
        alphas = [alpha]
        for t in range(1, T):
            # (B, K, 1) + (1, K, K) + (B, 1, K) -> (B, K_prev, K_next) -> (B, K_next)
            next_alpha = torch.logsumexp(alpha.unsqueeze(2) + trans.unsqueeze(0) + emissions[:, t].unsqueeze(1), dim=1)
            # (B, K): padded sequences keep their final alpha
            alpha = torch.where(mask[:, t].unsqueeze(1), next_alpha, alpha)
            alphas.append(alpha)
        # T x (B, K) -> (B, T, K)
        return torch.stack(alphas, dim=1)

    def path_score(self, emissions: Tensor, tags: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        """Score ``s(y)`` of given tag paths (start + emissions + transitions + end).

        emissions: (B, T, K) float.
        tags: (B, T) integer tag indices in ``[0, K)``; values at padded
            positions are ignored (any value).
        mask: (B, T) bool, left-aligned, every length >= 1 (None: all True).

        Returns: (B,) tensor of path scores in nats, including
            :data:`DISALLOWED_SCORE` for each disallowed transition used;
            differentiable.

        Raises: ValueError on bad shapes/masks or a tag index out of range.
        """
        mask = self._check(emissions, mask)
        B, T, K = emissions.shape
        if tuple(tags.shape) != (B, T):
            raise ValueError(f"tags must have shape (batch, time) = {(B, T)}, got {tuple(tags.shape)}.")
        if tags.dtype.is_floating_point or tags.dtype == torch.bool:
            raise ValueError(f"tags must be an integer tensor, got {tags.dtype}.")
        if B == 0:
            return emissions.new_zeros(0)
        # (B, T): padding replaced by tag 0 so that every index is valid
        tags = tags.to(device=emissions.device, dtype=torch.long).masked_fill(~mask, 0)
        if bool(((tags < 0) | (tags >= K)).any()):
            raise ValueError(f"tags must lie in [0, {K}) at real positions.")
        start, trans, end = self._potentials(emissions)
        weights = mask.to(emissions.dtype)  # (B, T)
        # (B, T, 1) -> (B, T)
        emitted = emissions.gather(2, tags.unsqueeze(2)).squeeze(2)
        # (B,)
        score = start[tags[:, 0]] + (emitted * weights).sum(dim=1)
        if T > 1:
            # (B, T - 1): transition into position t from t - 1, real only if t is real
            stepped = trans[tags[:, :-1], tags[:, 1:]]
            score = score + (stepped * weights[:, 1:]).sum(dim=1)
        # (B,)
        lengths = mask.sum(dim=1)
        # (B, 1) -> (B,)
        last_tags = tags.gather(1, (lengths - 1).unsqueeze(1)).squeeze(1)
        return score + end[last_tags]

    def log_likelihood(self, emissions: Tensor, tags: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        """``log p(tags | emissions) = path_score - log_partition``.

        Shapes as :meth:`path_score`. Returns (B,) tensor in nats (<= 0 for an
        allowed path); differentiable w.r.t. emissions and the parameters.

        Raises: ValueError as :meth:`path_score`.
        """
        return self.path_score(emissions, tags, mask) - self.log_partition(emissions, mask)

    def forward(self, emissions: Tensor, tags: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        """Same as :meth:`log_likelihood`: (B,) log-likelihood per sequence."""
        return self.log_likelihood(emissions, tags, mask)

    def neg_log_likelihood(
        self,
        emissions: Tensor,
        tags: Tensor,
        mask: Optional[Tensor] = None,
        reduction: str = "sum",
    ) -> Tensor:
        """Negative log-likelihood, the CRF training loss (nats).

        reduction: ``"sum"`` over sequences (scalar), ``"mean"`` over
            sequences (scalar), or ``"none"`` (B,).

        Raises: ValueError for an unknown reduction, or as :meth:`path_score`.
        """
        if reduction not in ("sum", "mean", "none"):
            raise ValueError(f"reduction must be 'sum', 'mean' or 'none', got {reduction!r}.")
        nll = -self.log_likelihood(emissions, tags, mask)
        if reduction == "sum":
            return nll.sum()
        if reduction == "mean":
            return nll.mean()
        return nll

    # -------------------------------------------------------------- decoding

    def viterbi_decode(
        self, emissions: Tensor, mask: Optional[Tensor] = None
    ) -> Tuple[List[List[int]], Tensor]:
        """Best allowed tag path per sequence (max-product / Viterbi algorithm).

        The recursion is vectorised over the batch (a loop over time only) and
        runs under ``torch.no_grad()``; backtracking is done in numpy.

        emissions: (B, T, K) float.
        mask: (B, T) bool, left-aligned, every length >= 1 (None: all True).

        Returns: ``(paths, scores)``: ``paths[b]`` is a list of exactly
            ``length_b`` tag indices, ``scores`` a (B,) tensor (emissions'
            dtype and device, no grad) with each path's score, equal to
            :meth:`path_score` of that path. If no allowed path exists, the
            best path uses a disallowed transition and its score includes
            :data:`DISALLOWED_SCORE`.

        Raises: ValueError on bad shapes, an empty sequence or a mask that is
            not left-aligned.
        """
        with torch.no_grad():
            mask = self._check(emissions, mask)
            B, T, K = emissions.shape
            if B == 0:
                return [], emissions.new_zeros(0)
            start, trans, end = self._potentials(emissions)
            order, lengths, running = _longest_first(mask)  # (B,), (B,), T ints
            E = emissions[order]  # (B, T, K), longest sequence first
            # (B, K): best score of a path ending in each tag at the row's
            # current position (its last real one once the row has ended)
            best = start.unsqueeze(0) + E[:, 0]
            # (T - 1, B, K): best previous tag for each tag at position t; left
            # unset for sequences that have ended (backtracking discards them)
            backpointers = torch.empty(max(T - 1, 0), B, K, dtype=torch.long, device=emissions.device)
            for t in range(1, T):
                n = running[t]
                # (n, K, 1) + (1, K, K) -> (n, K_prev, K_next) -> (n, K_next), (n, K_next)
                top, argtop = (best[:n].unsqueeze(2) + trans.unsqueeze(0)).max(dim=1)
                backpointers[t - 1, :n] = argtop
                torch.add(top, E[:n, t], out=best[:n])
            # (B, K) -> (B,), (B,)
            final_scores, final_tags = (best + end.unsqueeze(0)).max(dim=1)

            # Backtracking, vectorised over the sorted batch, in numpy.
            pointers = backpointers.cpu().numpy()  # (T - 1, B, K)
            lengths = lengths.cpu().numpy()  # (B,)
            last = final_tags.cpu().numpy()  # (B,)
            rows = numpy.arange(B)  # (B,)
            paths = numpy.empty((B, T), dtype=numpy.int64)  # (B, T)
            current = last.copy()  # (B,): tag at position t + 1 (or the last tag)
            paths[:, T - 1] = current
            for t in range(T - 2, -1, -1):
                # (B,): follow the pointer where t + 1 is real, else start at the last tag
                current = numpy.where(lengths > t + 1, pointers[t][rows, current], last)
                paths[:, t] = current
            decoded: List[List[int]] = [[] for _ in range(B)]
            for row, b in enumerate(order.tolist()):
                decoded[b] = paths[row, : lengths[row]].tolist()
            # (B,): back to the batch's order
            final_scores = torch.empty_like(final_scores).index_copy_(0, order, final_scores)
        return decoded, final_scores

    # ------------------------------------------------------------- marginals

    def forward_backward(
        self, emissions: Tensor, mask: Optional[Tensor] = None, temperature: float = 1.0
    ) -> Posterior:
        """Forward and backward recursions over the allowed paths (sum-product),
        without gradient (see :func:`_scaled_forward_backward`).

        emissions: (B, T, K) float (float64 advised: marginals are
            differences of log-sums); mask: (B, T) as :meth:`log_partition`.
        temperature: ``tau > 0``, divides emission and transition scores.

        Returns: a :class:`Posterior` in the emissions' dtype and device.
        Raises: ValueError as :meth:`log_partition`, or a temperature that is
            not a finite number above 0.
        """
        if not (isinstance(temperature, (int, float)) and 0.0 < float(temperature) < float("inf")):
            raise ValueError(f"temperature must be a finite number above 0, got {temperature!r}.")
        mask = self._check(emissions, mask)
        B, T, K = emissions.shape
        if B == 0:
            empty = emissions.new_zeros(0, T, K)
            return Posterior(empty, empty, emissions.new_zeros(0), empty, emissions.new_zeros(K, K), mask)
        with torch.no_grad():
            start, trans, end = self._potentials(emissions, float(temperature))
            scaled = emissions / float(temperature)  # (B, T, K)
            log_alpha, log_beta = _scaled_forward_backward(scaled, mask, start, trans, end)  # (B, T, K) each
            # (B, K) -> (B,): padding repeats the last real alpha
            log_z = torch.logsumexp(log_alpha[:, -1] + end.unsqueeze(0), dim=1)
        return Posterior(log_alpha, log_beta, log_z, scaled, trans, mask)

    def marginals(self, emissions: Tensor, mask: Optional[Tensor] = None, temperature: float = 1.0) -> Tensor:
        """Tag marginals ``p(y_t = k | E)``: (B, T, K), summing to 1 over ``k``
        at real positions, 0 at padded ones. Arguments and errors as
        :meth:`forward_backward`."""
        return tag_marginals(self.forward_backward(emissions, mask, temperature))


def _exp_shifted(trans: Tensor) -> Tuple[Tensor, Tensor]:
    """``(exp(trans - shift), shift = max(trans))``: (K, K) in [0, 1], disallowed exactly 0."""
    shift = trans.max()  # ()
    return torch.exp(trans - shift), shift  # (K, K), ()


def _longest_first(mask: Tensor) -> Tuple[Tensor, Tensor, List[int]]:
    """Sequences sorted by length, longest first, for recursions that step
    only the sequences still running.

    mask: (B, T) bool, left-aligned. Returns ``(order, lengths, running)``:
    ``order`` (B,) long, the batch index of each sorted row; ``lengths`` (B,)
    long, the sorted lengths; ``running`` T ints, ``running[t]`` the number of
    sequences longer than ``t`` (the first ``running[t]`` sorted rows)."""
    T = mask.shape[1]
    # (B,), (B,)
    lengths, order = torch.sort(mask.sum(dim=1), descending=True, stable=True)
    # (T, B) -> (T,)
    running = (lengths.unsqueeze(0) > torch.arange(T, device=mask.device).unsqueeze(1)).sum(dim=1).tolist()
    return order, lengths, running


def _scaled_forward_backward(emissions: Tensor, mask: Tensor, start: Tensor, trans: Tensor, end: Tensor) -> Tuple[Tensor, Tensor]:
    """Forward and backward recursions in probability space with per-step
    scaling (Rabiner 1989, "A Tutorial on Hidden Markov Models", section V.A):
    ``alpha_t = a_t * exp(log_scale_t)`` with ``a_t`` summing to 1, so one step
    is a (n, K) @ (K, K) product, a product with the emission factors and one
    division, with no log-sum-exp. Sequences run longest first, and step ``t``
    updates only the ``n_t`` sequences longer than ``t`` (no masking per step).
    No gradient (in-place writes).

    emissions: (B, T, K) float; mask: (B, T) bool, left-aligned, lengths >= 1;
    start, end: (K,), trans: (K, K), constrained (``_potentials``).

    Returns: ``(log_alpha, log_beta)``, (B, T, K) each, as :class:`Posterior`
        (padding: alpha repeats the last real position, beta is ``end``), equal
        to the log-space recursions up to float rounding. An entry whose
        probability is below the dtype's smallest normal number relative to
        its step's total (a tag that only disallowed paths reach) is ``-inf``.
    """
    B, T, K = emissions.shape
    tiny = torch.finfo(emissions.dtype).tiny
    order, lengths, running = _longest_first(mask)  # (B,), (B,), T ints
    E = emissions[order]  # (B, T, K), longest sequence first
    real = mask[order].unsqueeze(2)  # (B, T, 1)
    e_max = E.max(dim=2, keepdim=True).values  # (B, T, 1)
    q = torch.exp(E - e_max)  # (B, T, K): emission factors in [0, 1]
    p, shift = _exp_shifted(trans)  # (K_prev, K_next), ()
    p_back = p.t().contiguous()  # (K_next, K_prev)

    # Forward: a[:, t] sums to 1 over tags; norm_a[:, t] is step t's divisor (1 at padding).
    a = E.new_empty(B, T, K)  # (B, T, K)
    norm_a = E.new_ones(B, T, 1)  # (B, T, 1)
    s_max = start.max()  # ()
    first = torch.exp(start - s_max).unsqueeze(0) * q[:, 0]  # (1, K) * (B, K) -> (B, K)
    norm_a[:, 0] = first.sum(dim=1, keepdim=True).clamp_min(tiny)  # (B, 1)
    torch.div(first, norm_a[:, 0], out=a[:, 0])
    for t in range(1, T):
        n = running[t]
        # (n, K_prev) @ (K_prev, K_next) * (n, K_next) -> (n, K_next)
        step = (a[:n, t - 1] @ p) * q[:n, t]
        norm = step.sum(dim=1, keepdim=True).clamp_min_(tiny)  # (n, 1)
        norm_a[:n, t] = norm
        torch.div(step, norm, out=a[:n, t])
    # (B, T, K): padded positions repeat the last real one
    last_real = torch.minimum(torch.arange(T, device=E.device).unsqueeze(0), (lengths - 1).unsqueeze(1))  # (B, T)
    a = a.gather(1, last_real.unsqueeze(2).expand(B, T, K))
    # (B, T, 1): log of what each step divided out, 0 at padding, summed over time
    step_scale = torch.log(norm_a) + e_max
    step_scale[:, 0] += s_max
    step_scale[:, 1:] += shift
    log_alpha = torch.log(a) + step_scale.masked_fill(~real, 0.0).cumsum(dim=1)  # (B, T, K)

    # Backward: b[:, t] sums to 1 over tags; positions from the last real one on hold END.
    e_end = end.max()  # ()
    b = torch.exp(end - e_end).expand(B, T, K).contiguous()  # (B, T, K)
    norm_b = E.new_ones(B, T, 1)  # (B, T, 1)
    for t in range(T - 2, -1, -1):
        n = running[t + 1]  # sequences whose position t + 1 is real
        # (n, K_next) * (n, K_next) @ (K_next, K_prev) -> (n, K_prev)
        step = (q[:n, t + 1] * b[:n, t + 1]) @ p_back
        norm = step.sum(dim=1, keepdim=True).clamp_min_(tiny)  # (n, 1)
        norm_b[:n, t] = norm
        torch.div(step, norm, out=b[:n, t])
    # (B, T - 1, 1): what step t divided out, 0 where t + 1 is padding
    back_scale = (torch.log(norm_b[:, :-1]) + e_max[:, 1:] + shift).masked_fill(~real[:, 1:], 0.0)
    # (B, T, 1): summed from t to the end, plus END's shift
    back_scale = torch.nn.functional.pad(back_scale.flip(1).cumsum(dim=1).flip(1), (0, 0, 0, 1)) + e_end
    log_beta = torch.log(b) + back_scale  # (B, T, K)

    # (B, T, K) each, back to the batch's order
    return torch.empty_like(log_alpha).index_copy_(0, order, log_alpha), torch.empty_like(log_beta).index_copy_(0, order, log_beta)


def tag_marginals(post: Posterior) -> Tensor:
    """(B, T, K) ``p(y_t = k) = exp(log_alpha + log_beta - log_z)``, 0 at padding."""
    # (B, T, K) - (B, 1, 1)
    log_p = post.log_alpha + post.log_beta - post.log_z[:, None, None]
    # (B, T, K)
    return log_p.exp().masked_fill(~post.mask.unsqueeze(2), 0.0)


def segment_log_probs(post: Posterior, segments: Tensor) -> Tensor:
    """Log-probability that a segment carries given tags, summed over all allowed paths.

    segments: (N, 6) integer rows ``(b, s, e, first, inside, last)``: sequence
        ``b``, positions ``s <= e`` (inclusive) inside its length. For ``e > s``
        the event is ``y_s = first, y_{s+1} .. y_{e-1} = inside, y_e = last``
        (BILUO: ``B-X, I-X, L-X``); for ``e = s`` it is ``y_s = first`` (``U-X``).

    Returns: (N,) log-probabilities (nats, <= 0 up to rounding):
        ``log_alpha[s, first] + scores of s+1 .. e + log_beta[e, last] - log_z``,
        O(1) per segment via cumulative sums of the emissions.
    Raises: ValueError on a bad shape, a tag out of range or a segment outside
        its sequence.
    """
    B, T, K = post.emissions.shape
    if segments.dim() != 2 or segments.shape[1] != 6 or segments.dtype.is_floating_point:
        raise ValueError(f"segments must be an (N, 6) integer tensor, got {tuple(segments.shape)} {segments.dtype}.")
    # (N, 6)
    segments = segments.to(device=post.emissions.device, dtype=torch.long)
    # (N,) each
    b, s, e, first, inside, last = segments.unbind(1)
    if not len(segments):
        return post.emissions.new_zeros(0)
    tags = segments[:, 3:]
    if bool((b < 0).any() | (b >= B).any() | (tags < 0).any() | (tags >= K).any()):
        raise ValueError(f"segments hold a sequence index outside [0, {B}) or a tag outside [0, {K}).")
    # (N,): the segment's sequence length
    lengths = post.mask.sum(dim=1)[b]
    if bool((s < 0).any() | (e < s).any() | (e >= lengths).any()):
        raise ValueError("segments must satisfy 0 <= start <= end < length of their sequence.")
    # (B, T + 1, K): cum[b, t, k] = sum of emissions[b, :t, k]
    cum = torch.nn.functional.pad(post.emissions.cumsum(dim=1), (0, 0, 1, 0))
    trans = post.transitions
    # (N,): positions s + 1 .. e - 1 carry the inside tag
    n_inside = (e - s - 1).clamp(min=0)
    inside_emitted = cum[b, e, inside] - cum[b, torch.minimum(s + 1, e), inside]
    # (N,): first -> inside^n_inside -> last, or first -> last when nothing is inside
    through = trans[first, inside] + (n_inside - 1).clamp(min=0) * trans[inside, inside] + trans[inside, last]
    stepped = torch.where(n_inside > 0, through + inside_emitted, trans[first, last])
    # (N,)
    longer = post.log_alpha[b, s, first] + stepped + post.emissions[b, e, last] + post.log_beta[b, e, last]
    single = post.log_alpha[b, s, first] + post.log_beta[b, s, first]
    return torch.where(e == s, single, longer) - post.log_z[b]
