"""Task-guided layer selection (LD-Net, Liu et al. 2018, section 3.3).

:func:`run_layer_selection` continues training a pipeline whose embedder is an
LM embedder with the layer masks z learnable and the regulariser
:func:`spacy_ldnet.prune.regularizer.layer_selection_penalty` added to the
loss, and keeps the component state with the best dev F1 among the
evaluations where at most ``lambda1`` layers are in use. The layers whose z
is 0 are then deleted by :func:`spacy_ldnet.prune.surgery.prune_in_place`.
"""
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch
from spacy.language import Language
from spacy.training import Example

from ..embed.lm_modules import LMFeatures
from .locate import PruneError, find_lm_pipe, lm_module, set_mask_learning
from .regularizer import count_nonzero_layers, layer_selection_penalty
from .state import ResumableRun, RunResult


@dataclass
class PruneSettings:
    """Hyper-parameters of :func:`run_layer_selection`.

    lambda0: weight of the regulariser (LD-Net's lambda_0, >= 0).
    lambda1: layer budget across both LMs (LD-Net's lambda_1, >= 0).
    steps: optimizer steps of continued training (>= 1).
    eval_every: dev F1 is measured (a log line, and the resumable state is
        saved) at every ``eval_every``-th step and at the last. When such an
        evaluation finds more than ``lambda1`` layers in use, one more is
        taken at the first later step within the budget, as only states
        within the budget can be kept (masks that the task gradient lifts off
        0 for a step or two make the count flicker).
    batch_size: sentences per step.
    learn_rate: Adam learning rate of the component's own weights.
    mask_learn_rate: SGD learning rate of the masks z.
    seed: seed of the shuffling and of the dropout masks (random, numpy and
        torch are seeded with ``seed + step`` when the loop starts or resumes).
    force_budget: when ``steps`` end with no evaluation within the budget,
        keep the ``floor(lambda1)`` layers with the largest masks (ties: the
        lower layer, forward before backward), set the other masks to 0 and
        take that state (True, the default), or raise :class:`PruneError`
        (False: only the regulariser selects, as in LD-Net). A resumed run
        may change it.
    """

    lambda0: float = 0.05
    lambda1: float = 2
    steps: int = 1000
    eval_every: int = 100
    batch_size: int = 32
    learn_rate: float = 0.0005
    mask_learn_rate: float = 0.5
    seed: int = 0
    force_budget: bool = True


#: Settings a resumed layer selection may change: more steps continue the same run.
RESUMABLE_CHANGES = ("steps", "force_budget")


def evaluation_due(step: int, settings: PruneSettings, within_budget: bool, last_over_budget: bool) -> bool:
    """Whether layer selection evaluates after ``step`` (see :class:`PruneSettings` ``eval_every``).

    within_budget: at most ``lambda1`` layers are in use after ``step``.
    last_over_budget: the latest evaluation had more than ``lambda1`` layers in use.
    """
    regular = step % settings.eval_every == 0 or step == settings.steps
    return regular or (within_budget and last_over_budget)


def run_layer_selection(
    nlp: Language,
    train_examples: Sequence[Example],
    dev_examples: Sequence[Example],
    settings: PruneSettings,
    *,
    state_dir: Optional[Path] = None,
    log: Callable[[str], None] = print,
) -> RunResult:
    """Continue training with learnable masks and the LD-Net regulariser.

    On return the component holds the best state found within the layer
    budget (masks included), its masks fixed again. Evaluations follow
    :class:`PruneSettings` ``eval_every``; each logs the step, the mean
    training loss per step since the last one (the component's loss as
    ``update`` reports it, without the regulariser), the dev F1 and the
    layers in use. With ``state_dir`` a resumable state is saved at
    every evaluation and picked up when the function is called again with the
    same directory (the Adam moments restart).

    Raises:
        PruneError: the pipeline has no LM embedder; ``state_dir`` holds a
            state written with other settings; or no evaluation had at most
            ``lambda1`` layers in use and ``settings.force_budget`` is False
            (the message names the fixes; the error's ``history`` attribute
            holds the mask history).
    """
    from thinc.api import Adam

    name, pipe = find_lm_pipe(nlp)
    run = ResumableRun(nlp, pipe, settings, dev_examples, state_dir=state_dir, what="layer selection", log=log, changeable=RESUMABLE_CHANGES)
    run.resume()
    set_mask_learning(pipe, True)
    lm = lm_module(pipe)
    optimizer = Adam(settings.learn_rate, grad_clip=5.0)
    mask_optimizer = torch.optim.SGD([lm.forward_masks, lm.backward_masks], lr=settings.mask_learn_rate)
    stream = run.batches(train_examples)
    while run.step < settings.steps:
        losses: Dict[str, float] = {}
        pipe.update(next(stream), drop=0.0, sgd=None, losses=losses)  # accumulates the task gradient
        penalty = layer_selection_penalty(lm.layer_masks(), settings.lambda0, settings.lambda1)
        penalty.backward()
        mask_optimizer.step()
        mask_optimizer.zero_grad(set_to_none=True)
        pipe.finish_update(optimizer)  # applies the other gradients, clamps z to [0, 1]
        run.step += 1
        run.record_loss(losses.get(name, 0.0))
        run.result.mask_history.append(_mask_record(lm, run.step, float(penalty.detach()), losses.get(name, 0.0)))
        evaluations = run.result.evaluations
        last_over = bool(evaluations) and evaluations[-1]["n_layers"] > settings.lambda1
        if evaluation_due(run.step, settings, _within(lm, settings), last_over):
            _evaluate(run, lm, settings)
    if run.best_bytes is None and settings.force_budget:
        _force_and_evaluate(run, lm, settings)
    set_mask_learning(pipe, False)
    if not run.restore_best():
        raise _no_state_within_budget(run.result, settings)
    set_mask_learning(pipe, False)
    return run.result


def _within(lm: LMFeatures, settings: PruneSettings) -> bool:
    return count_nonzero_layers(lm.layer_masks()) <= settings.lambda1


def _mask_record(lm: LMFeatures, step: int, penalty: float, loss: float) -> Dict[str, Any]:
    return {
        "step": step,
        "forward": [round(float(z), 5) for z in lm.forward_masks.detach()],
        "backward": [round(float(z), 5) for z in lm.backward_masks.detach()],
        "penalty": penalty,
        "loss": float(loss),
    }


def _evaluate(run: ResumableRun, lm: LMFeatures, settings: PruneSettings, **marks: Any) -> None:
    n_layers = count_nonzero_layers(lm.layer_masks())
    within = n_layers <= settings.lambda1
    note = f"layers in use {n_layers:2d} ({'within' if within else 'over'} budget {settings.lambda1:g}{', forced' if marks.get('forced_budget') else ''})"
    run.evaluate(eligible=within, note=note, n_layers=n_layers, within_budget=within, **marks)


def _force_and_evaluate(run: ResumableRun, lm: LMFeatures, settings: PruneSettings) -> None:
    n_forward = lm.forward_masks.shape[0]
    before = count_nonzero_layers(lm.layer_masks())
    kept = force_layer_budget(lm, int(math.floor(settings.lambda1)))
    run.log(
        f"No evaluation had at most lambda1={settings.lambda1:g} layers in use after {run.step} steps "
        f"({before} in use now): keeping the {len(kept)} layers with the largest masks "
        f"(forward {[i for i in kept if i < n_forward]}, backward {[i - n_forward for i in kept if i >= n_forward]}) "
        f"and setting the others to 0. For a selection by the regulariser alone give more --steps or a "
        f"larger --lambda0, or --strict-budget to stop here instead."
    )
    _evaluate(run, lm, settings, forced_budget=True)


def _no_state_within_budget(result: RunResult, settings: PruneSettings) -> PruneError:
    last = result.evaluations[-1]["n_layers"] if result.evaluations else "?"
    error = PruneError(
        f"No evaluation had at most lambda1={settings.lambda1:g} layers in use (last: {last}). Fix: "
        f"more --steps (the run resumes), a larger --lambda0 or --mask-learn-rate, or a larger --lambda1; "
        f"or leave out --strict-budget to keep the lambda1 layers with the largest masks."
    )
    error.history = result.mask_history
    return error


def force_layer_budget(lm: LMFeatures, budget: int) -> List[int]:
    """Keep the ``budget`` largest layer masks and set every other mask to exactly 0.

    Args:
        lm: the LM features whose ``forward_masks`` (L_f,) and ``backward_masks``
            (L_b,) are changed in place.
        budget: number of layers to keep (>= 0), across both LMs.

    Returns:
        The kept indices into ``lm.layer_masks()`` (forward layers 0..L_f-1, then
        backward layers), ascending. Masks already at 0 are never kept, so fewer
        than ``budget`` may be returned. Ties keep the lower index.

    Raises:
        ValueError: ``budget`` is negative.
    """
    if budget < 0:
        raise ValueError(f"The layer budget must be >= 0, got {budget}")
    masks = lm.layer_masks().detach()  # (L_f + L_b,)
    order = sorted(range(len(masks)), key=lambda i: (-float(masks[i]), i))
    kept = sorted(i for i in order[:budget] if float(masks[i]) != 0.0)
    drop = torch.ones_like(masks, dtype=torch.bool)  # (L_f + L_b,) True: set to 0
    drop[kept] = False
    n_forward = lm.forward_masks.shape[0]
    with torch.no_grad():
        lm.forward_masks.masked_fill_(drop[:n_forward], 0.0)
        lm.backward_masks.masked_fill_(drop[n_forward:], 0.0)
    lm.clear_cache()  # LM outputs cached with the old masks
    return kept
