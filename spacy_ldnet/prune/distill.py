"""Knowledge distillation from the unpruned tagger while its LMs are pruned.

Layer selection removes most LM layers within a few hundred steps, and the
tagger loses part of what it learned from them (on CoNLL-2003 dev, 94.92 ->
93.9 at the step the budget is first met, in ``metrics/conll03_ldnet.prune.log``
before distillation). With distillation the pruned tagger (student) is
trained towards the CRF distribution of the unpruned one (teacher) as well as
towards the gold tags: the loss per sequence is

    (1 - w) * NLL_p(gold) + w * H(q, p),    H(q, p) = log Z_p - E_q[s_p(y)]

where p and q are the student's and the teacher's linear-chain CRF
distributions over tag paths, s_p(y) the student's path score and Z_p its
partition function. H(q, p) is the structure-level distillation loss of Wang
et al. 2020 ("Structure-Level Knowledge Distillation For Multilingual Sequence
Labeling", ACL, section 3.2, the "posterior distillation" form); its
gradient w.r.t. the student's emission scores is ``mu_p - mu_q`` (student
minus teacher tag marginals), and w.r.t. its transition scores the
difference of expected transition counts. E_q[s_p(y)] is linear in the
student's scores with the teacher's marginals as coefficients, and those are
the gradients of log Z_q (forward algorithm + autograd), so no sampling or
enumeration is needed.

The teacher's emission scores do not change, so :class:`CRFTeacher` computes
them once for the training examples (one inference pass, the cost of
evaluating the unpruned pipeline on the training set) and keeps a frozen copy
of its CRF.
"""
import copy
from typing import Dict, List, Optional, Sequence

import numpy
import torch
from spacy.training import Example
from thinc.api import set_dropout_rate

from ..ner.model import get_head
from ..thinc_utils import to_host


class CRFTeacher:
    """The unpruned tagger's emission scores on a fixed set of examples, and a frozen copy of its CRF.

    pipe: an initialized ``ldnet_ner`` component (before any layer is pruned).
    examples: the training examples; their ``predicted`` docs are scored now,
        and :meth:`scores_for` later looks examples up by identity, so pass the
        same objects that training batches are drawn from.
    batch_size: docs per inference batch.

    Memory: one float32 (n_tokens, K) array per example (K tags), about 14 MB
    for CoNLL-2003 train (204k tokens, K = 17).
    """

    def __init__(self, pipe, examples: Sequence[Example], *, batch_size: int = 64) -> None:
        head = get_head(pipe.model)
        self.crf = copy.deepcopy(head.crf)
        self.crf.eval()
        self._scores: Dict[int, numpy.ndarray] = {}
        examples = list(examples)
        with torch.no_grad():
            for start in range(0, len(examples), batch_size):
                chunk = examples[start : start + batch_size]
                docs = [eg.predicted for eg in chunk]
                if not any(len(d) for d in docs):
                    scores = [numpy.zeros((len(d), self.crf.num_tags), dtype="float32") for d in docs]
                else:
                    scores = pipe.model.predict(docs)
                for eg, s in zip(chunk, scores):
                    self._scores[id(eg)] = to_host(s).astype("float32", copy=True)

    def __len__(self) -> int:
        return len(self._scores)

    def scores_for(self, examples: Sequence[Example]) -> List[numpy.ndarray]:
        """Per-example (n_tokens, K) teacher emission scores.

        Raises:
            KeyError: an example was not among those the teacher scored (the
                message says to build the teacher from the training examples).
        """
        out = []
        for eg in examples:
            found = self._scores.get(id(eg))
            if found is None or len(found) != len(eg.predicted):
                raise KeyError(
                    "This example was not scored by the distillation teacher. Fix: build CRFTeacher "
                    "from the same Example objects that the training batches are drawn from."
                )
            out.append(found)
        return out


def crf_cross_entropy(student_crf, emissions: torch.Tensor, mask: torch.Tensor, teacher_crf, teacher_emissions: torch.Tensor) -> torch.Tensor:
    """Cross-entropy H(q, p) of the student CRF p from the teacher CRF q, summed over the batch (nats).

    student_crf, teacher_crf: :class:`spacy_ldnet.ner.crf.ConditionalRandomField`
        with the same ``num_tags`` (and constraints).
    emissions: (B, T, K) student emission scores (differentiable).
    mask: (B, T) bool, left-aligned, every length >= 1.
    teacher_emissions: (B, T, K) teacher emission scores (no gradient flows into them).

    Returns: scalar tensor ``sum_b (log Z_p - E_q[s_p(y)])`` >= the entropy of
        q; differentiable w.r.t. ``emissions`` and the student CRF's
        transition scores. Equals the student's NLL of a path when q puts all
        its mass on that path. Source: Wang et al. 2020, section 3.2.

    Raises: ValueError on bad shapes or masks (as ``log_partition``).
    """
    with torch.enable_grad():
        # (B, T, K): a leaf copy, so the teacher's marginals come out as its gradient
        q_emissions = teacher_emissions.detach().clone().requires_grad_(True)
        t_params = [teacher_crf.start_transitions, teacher_crf.transitions, teacher_crf.end_transitions]
        needs = [p.requires_grad for p in t_params]
        for p in t_params:
            p.requires_grad_(True)
        try:
            log_z_q = teacher_crf.log_partition(q_emissions, mask).sum()
            # (B, T, K) tag marginals; (K,) start, (K, K) transition, (K,) end expected counts, summed over B
            mu_q, start_q, trans_q, end_q = torch.autograd.grad(log_z_q, [q_emissions] + t_params)
        finally:
            for p, n in zip(t_params, needs):
                p.requires_grad_(n)
    weights = mask.to(emissions.dtype).unsqueeze(2)  # (B, T, 1)
    # scalar: E_q[s_p(y)] summed over the batch, linear in the student's scores
    expected = (mu_q.to(emissions.dtype) * emissions * weights).sum()
    expected = expected + (start_q * student_crf.start_transitions).sum()
    expected = expected + (trans_q * student_crf.transitions).sum()
    expected = expected + (end_q * student_crf.end_transitions).sum()
    return student_crf.log_partition(emissions, mask).sum() - expected


def distillation_update(pipe, examples: Sequence[Example], teacher: CRFTeacher, weight: float, *, drop: float = 0.0) -> float:
    """One forward/backward pass of ``pipe`` on ``examples`` with the loss
    ``((1 - weight) * NLL + weight * H(q, p)) / sequences`` (see the module
    docstring); the gradients are accumulated, not applied (call
    ``pipe.finish_update(optimizer)`` next, as after ``pipe.update(..., sgd=None)``).

    Returns the loss (nats per sequence). Sequences with unknown gold tags
    are left out, as in ``get_loss``.

    Raises:
        ValueError: ``weight`` outside [0, 1].
        KeyError: as :meth:`CRFTeacher.scores_for`.
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"The distillation weight must lie in [0, 1], got {weight}.")
    examples = list(examples)
    docs = [eg.predicted for eg in examples]
    if not any(len(d) for d in docs):
        return 0.0
    set_dropout_rate(pipe.model, drop)
    scores, backprop = pipe.model.begin_update(docs)
    d_scores = [pipe.model.ops.alloc2f(*s.shape) for s in scores]
    batch = pipe.crf_batch(examples, scores)
    if batch is None:
        backprop(d_scores)
        return 0.0
    segments, keep, E, tags, mask = batch  # E: (S', T, K), tags/mask: (S', T)
    head = get_head(pipe.model)
    teacher_seqs = segments.split(teacher.scores_for(examples))
    teacher_E, _ = pipe._pad([teacher_seqs[k] for k in keep], head)  # (S', T, K)
    nll = head.crf.neg_log_likelihood(E, tags, mask, reduction="sum")
    cross_entropy = crf_cross_entropy(head.crf, E, mask, teacher.crf, teacher_E)
    loss = ((1.0 - weight) * nll + weight * cross_entropy) / len(keep)
    loss.backward()
    pipe.scatter_emission_grad(E.grad, segments, keep, d_scores)
    backprop(d_scores)
    return float(loss.item())


def make_teacher(pipe, examples: Sequence[Example], weight: float) -> Optional[CRFTeacher]:
    """A :class:`CRFTeacher` when ``weight > 0``, else None (no distillation)."""
    return CRFTeacher(pipe, examples) if weight > 0 else None
