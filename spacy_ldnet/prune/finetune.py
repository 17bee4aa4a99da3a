"""Training a pruned pipeline further, its LMs and layer masks fixed.

Layer selection hands over the component at the best step within the layer
budget, trained so far with layers fading out under it;
:func:`run_fine_tuning` continues training the component's own weights (word
and character features, W, word BiLSTM, CRF) on the kept layers alone, the
usual prune-then-fine-tune recipe (not a step of LD-Net).
"""
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

from spacy.language import Language
from spacy.training import Example

from .locate import find_lm_pipe, set_mask_learning
from .state import ResumableRun, RunResult


@dataclass
class FineTuneSettings:
    """Hyper-parameters of :func:`run_fine_tuning`.

    steps: optimizer steps (0: no fine-tuning).
    eval_every: evaluate dev F1 (a log line, and the resumable state is saved)
        at every ``eval_every``-th step and at the last.
    batch_size: sentences per step.
    learn_rate: Adam learning rate at step 0; it decays linearly to 0 at ``steps``.
    seed: seed of the shuffling and of the dropout masks, as
        :class:`spacy_ldnet.prune.selection.PruneSettings`.
    """

    steps: int = 0
    eval_every: int = 100
    batch_size: int = 32
    learn_rate: float = 0.0005
    seed: int = 0


def run_fine_tuning(
    nlp: Language,
    train_examples: Sequence[Example],
    dev_examples: Sequence[Example],
    settings: FineTuneSettings,
    *,
    state_dir: Optional[Path] = None,
    log: Callable[[str], None] = print,
) -> RunResult:
    """Train a pruned pipeline further (CRF negative log-likelihood), its LMs and masks fixed.

    The pipeline as handed over is evaluated first (step 0), so the kept
    state is never worse on dev than no fine-tuning. On return the component
    holds the state with the best dev F1. With ``state_dir`` the run is
    resumable like :func:`spacy_ldnet.prune.selection.run_layer_selection`.

    Raises:
        PruneError: the pipeline has no LM embedder, or ``state_dir`` holds a
            state written with other settings.
    """
    from thinc.api import Adam

    name, pipe = find_lm_pipe(nlp)
    set_mask_learning(pipe, False)
    run = ResumableRun(nlp, pipe, settings, dev_examples, state_dir=state_dir, what="fine-tuning", log=log)
    if not run.resume():
        run.evaluate()
    optimizer = Adam(settings.learn_rate, grad_clip=5.0)
    stream = run.batches(train_examples)
    while run.step < settings.steps:
        optimizer.learn_rate = settings.learn_rate * (1.0 - run.step / settings.steps)
        losses: Dict[str, float] = {}
        pipe.update(next(stream), drop=0.0, sgd=None, losses=losses)
        pipe.finish_update(optimizer)
        run.step += 1
        run.record_loss(losses.get(name, 0.0))
        if run.step % settings.eval_every == 0 or run.step == settings.steps:
            run.evaluate()
    run.restore_best()
    set_mask_learning(pipe, False)
    return run.result
