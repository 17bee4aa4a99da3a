"""Task-guided layer selection and exact pruning of a trained ``ldnet_ner`` pipeline
(LD-Net, Liu et al. 2018, section 3.3).

:func:`run_layer_selection` continues training a pipeline whose embedder is
``spacy_ldnet.LMEmbedder.v1`` with the masks z learnable and the regulariser of
:func:`spacy_ldnet.prune.regularizer.layer_selection_penalty` added to the
loss; it keeps the component state with the best dev F1 among the evaluations
where at most ``lambda1`` layers are in use. :func:`prune_in_place` then
deletes every layer whose z is 0 (exact, see
:meth:`spacy_ldnet.embed.lm_modules.LMFeatures.prune_layers`) and rewrites the
pipeline's config to describe the smaller LMs, so ``nlp.to_disk`` gives a
pipeline that ``spacy.load`` rebuilds.
"""
import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from spacy.language import Language
from spacy.tokens import Doc
from spacy.training import Example
from spacy.util import fix_random_seed, minibatch

from ..embed.lm_embedder import find_lm_embedder, get_lm_module
from ..embed.lm_modules import LMFeatures, kept_layers
from .distill import CRFTeacher, distillation_update
from .regularizer import count_nonzero_layers, layer_selection_penalty

LM_ARCHITECTURE = "spacy_ldnet.LMEmbedder.v1"
#: Every version of the LM embedder whose config block pruning rewrites.
LM_ARCHITECTURES = ("spacy_ldnet.LMEmbedder.v1", "spacy_ldnet.LMEmbedder.v2", "spacy_ldnet.LMEmbedder.v3")


class PruneError(ValueError):
    """The pipeline cannot be pruned (no LM embedder, no checkpoint within budget, ...)."""


@dataclass
class PruneSettings:
    """Hyper-parameters of :func:`run_layer_selection`.

    lambda0: weight of the regulariser (LD-Net's lambda_0).
    lambda1: layer budget across both LMs (LD-Net's lambda_1).
    steps: optimizer steps of continued training.
    eval_every: evaluate dev F1 (and save a resumable state) every N steps;
        a due evaluation waits up to N steps for a step within the budget.
    batch_size: sentences per step.
    learn_rate: Adam learning rate of the component's own weights.
    mask_learn_rate: SGD learning rate of the masks z.
    seed: seed of the shuffling and of the dropout masks (random, numpy and
        torch are seeded with ``seed + step`` when the loop starts or resumes).
    distill_weight: w in [0, 1]: the task loss is (1 - w) * NLL + w * the
        cross-entropy from the unpruned tagger's CRF (see
        :mod:`spacy_ldnet.prune.distill`); 0: the CRF NLL alone (LD-Net).
    force_budget: when ``steps`` end with no evaluation within the budget,
        keep the ``floor(lambda1)`` layers with the largest masks (ties: the
        lower layer, forward before backward), set the other masks to 0 and
        take that state as the selected one, instead of raising PruneError.
        Not a step of LD-Net (whose regulariser is meant to reach the budget
        by itself); a resumed run may switch it on.
    """

    lambda0: float = 0.05
    lambda1: float = 2
    steps: int = 1000
    eval_every: int = 100
    batch_size: int = 32
    learn_rate: float = 0.0005
    mask_learn_rate: float = 0.5
    seed: int = 0
    distill_weight: float = 0.0
    force_budget: bool = False


@dataclass
class FineTuneSettings:
    """Hyper-parameters of :func:`run_fine_tuning` (training after the deletion).

    steps: optimizer steps (0: no fine-tuning).
    eval_every: evaluate dev F1 (and save a resumable state) every N steps.
    batch_size: sentences per step.
    learn_rate: Adam learning rate at step 0; it decays linearly to 0 at ``steps``.
    seed: seed of the shuffling and of the dropout masks, as :class:`PruneSettings`.
    distill_weight: as :class:`PruneSettings` (the teacher is the unpruned tagger).
    pseudo_text, pseudo_sentences: the raw-text file and the number of its
        sentences, tagged by the unpruned pipeline, that the caller added to
        the training examples (:mod:`spacy_ldnet.prune.pseudo`; ``""`` and 0:
        none). Recorded so that a resumed run with other ones is refused.
    """

    steps: int = 0
    eval_every: int = 100
    batch_size: int = 32
    learn_rate: float = 0.0005
    seed: int = 0
    distill_weight: float = 0.0
    pseudo_text: str = ""
    pseudo_sentences: int = 0


@dataclass
class FineTuneResult:
    best_step: int  # 0: the pruned pipeline as selected was best
    best_dev_f1: float
    evaluations: List[Dict[str, Any]] = field(default_factory=list)  # per evaluation: step, dev_f1


@dataclass
class SelectionResult:
    best_step: Optional[int]
    best_dev_f1: Optional[float]
    mask_history: List[Dict[str, Any]] = field(default_factory=list)  # per step: step, forward, backward, penalty, loss
    evaluations: List[Dict[str, Any]] = field(default_factory=list)  # per evaluation: step, dev_f1, n_layers


# ------------------------------------------------------------------- finding


def find_lm_pipe(nlp: Language) -> Tuple[str, Any]:
    """Name and object of the (first) component whose model has an ``LMEmbedder.v1``.

    Raises:
        PruneError: no component has LM features.
    """
    for name, pipe in nlp.pipeline:
        model = getattr(pipe, "model", None)
        if model is not None and find_lm_embedder(model) is not None:
            return name, pipe
    raise PruneError(
        f"No component of this pipeline ({nlp.pipe_names}) uses {LM_ARCHITECTURE}, so there are no LM "
        f"layers to select. Fix: train a pipeline whose ldnet_ner embedder is {LM_ARCHITECTURE} "
        f"(e.g. configs/conll03_ldnet.cfg)."
    )


def _embedder_node(pipe):
    node = find_lm_embedder(pipe.model)
    if node is None:
        raise PruneError("The component has no ldnet_lm_embedder layer.")
    return node


def lm_module(pipe) -> LMFeatures:
    """The torch :class:`LMFeatures` of a component."""
    return get_lm_module(pipe.model)


def find_lm_embedder_config(block: Any) -> Optional[Dict[str, Any]]:
    """The first (mutable) block of ``block``, a config dict at any depth, whose
    ``@architectures`` is one of :data:`LM_ARCHITECTURES`; None if there is none."""
    if isinstance(block, dict):
        if block.get("@architectures") in LM_ARCHITECTURES:
            return block
        for value in block.values():
            found = find_lm_embedder_config(value)
            if found is not None:
                return found
    return None


def _embedder_config(nlp: Language, name: str) -> Dict[str, Any]:
    """The (mutable) config block of the LM embedder inside the component's config."""
    found = find_lm_embedder_config(nlp.get_pipe_config(name))
    if found is None:
        raise PruneError(f"The config of component {name!r} has no {LM_ARCHITECTURE} block.")
    return found


def score_key(nlp: Language) -> str:
    """The F1 score the pipeline is selected on: the highest-weighted ``*_f`` score weight."""
    weights = {k: v for k, v in (nlp.config["training"].get("score_weights") or {}).items() if v}
    f_keys = sorted((k for k in weights if k.endswith("_f")), key=lambda k: -weights[k])
    return f_keys[0] if f_keys else "ents_f"


# ------------------------------------------------------------------ costs


def lm_cost(lm: LMFeatures) -> Dict[str, Any]:
    """Parameters and multiply-adds per token of the two LMs (the LSTM stacks;
    the frozen input embeddings are counted apart: a lookup costs no arithmetic)."""

    def count(module, embedding: bool) -> int:
        return sum(
            p.numel() for n, p in module.named_parameters() if n.startswith("embedding") == embedding
        )

    fw, bw = lm.forward_lm, lm.backward_lm
    return {
        "layers": {"forward": fw.num_layers, "backward": bw.num_layers},
        "lstm_parameters": count(fw, False) + count(bw, False),
        "embedding_parameters": count(fw, True) + count(bw, True),
        "multiply_adds_per_token": fw.multiply_adds_per_token() + bw.multiply_adds_per_token(),
        "projection_multiply_adds_per_token": lm.proj.in_features * lm.proj.out_features,
    }


def words_per_second(nlp: Language, docs: Sequence[Doc], *, batch_size: int = 128, repeats: int = 1) -> float:
    """Words/s of ``nlp.pipe`` over copies of ``docs`` (after one warm-up batch); best of ``repeats``."""
    docs = [Doc(nlp.vocab, words=[t.text for t in d], spaces=[bool(t.whitespace_) for t in d]) for d in docs]
    n_words = sum(len(d) for d in docs)
    list(nlp.pipe([d.copy() for d in docs[:batch_size]], batch_size=batch_size))
    best = 0.0
    for _ in range(repeats):
        copies = [d.copy() for d in docs]
        start = time.perf_counter()
        for _ in nlp.pipe(copies, batch_size=batch_size):
            pass
        best = max(best, n_words / (time.perf_counter() - start))
    return best


# ---------------------------------------------------------------- selection


def run_layer_selection(
    nlp: Language,
    train_examples: Sequence[Example],
    dev_examples: Sequence[Example],
    settings: PruneSettings,
    *,
    state_dir: Optional[Path] = None,
    log: Callable[[str], None] = print,
    teacher: Optional[CRFTeacher] = None,
) -> SelectionResult:
    """Continue training with learnable masks and the LD-Net regulariser.

    On return the component holds the best state found within the layer budget
    (masks included). Evaluations fall due every ``eval_every`` steps and are
    taken at the first step from then on with at most ``lambda1`` layers in
    use (or ``eval_every`` steps later, or at the last step). With ``state_dir``, a resumable state (component bytes,
    step, history, best state) is written every ``eval_every`` steps and picked
    up when the function is called again with the same directory (the Adam
    moments restart). With ``settings.distill_weight > 0``, ``teacher`` (the
    unpruned tagger's scores on ``train_examples``) is required.

    Raises:
        PruneError: the pipeline has no LM embedder, no evaluation ever had
            at most ``lambda1`` layers in use (the message suggests more steps
            or a larger ``lambda0``), or distillation is on without a teacher.
    """
    from thinc.api import Adam

    _check_teacher(settings, teacher)

    name, pipe = find_lm_pipe(nlp)
    key = score_key(nlp)
    node = _embedder_node(pipe)
    node.attrs["learn_layer_masks"] = True
    result = SelectionResult(best_step=None, best_dev_f1=None)
    best_bytes: Optional[bytes] = None
    step = 0
    if state_dir is not None and (Path(state_dir) / "state.json").is_file():
        state_dir = Path(state_dir)
        state = json.loads((state_dir / "state.json").read_text())
        _check_resumed_settings(state.get("settings"), settings, state_dir)
        pipe.from_bytes((state_dir / "component.bin").read_bytes())
        node.attrs["learn_layer_masks"] = True
        step = int(state["step"])
        result = SelectionResult(state["best_step"], state["best_dev_f1"], state["mask_history"], state["evaluations"])
        if (state_dir / "best.bin").is_file():
            best_bytes = (state_dir / "best.bin").read_bytes()
        log(f"Resuming layer selection from {state_dir} at step {step}")
    lm = lm_module(pipe)
    lm.set_learn_masks(True)
    optimizer = Adam(settings.learn_rate, grad_clip=5.0)
    mask_optimizer = torch.optim.SGD([lm.forward_masks, lm.backward_masks], lr=settings.mask_learn_rate)
    stream = _batches(train_examples, settings.batch_size, random.Random(settings.seed + step))
    fix_random_seed(settings.seed + step)  # dropout masks: the same run twice gives the same selection

    def evaluate_and_save(**marks: Any) -> None:
        nonlocal best_bytes
        n_layers = count_nonzero_layers(lm.layer_masks())
        dev_f1 = float(nlp.evaluate(list(dev_examples))[key])
        result.evaluations.append({"step": step, "dev_f1": dev_f1, "n_layers": n_layers, **marks})
        within = n_layers <= settings.lambda1
        if within and (result.best_dev_f1 is None or dev_f1 > result.best_dev_f1):
            result.best_dev_f1, result.best_step = dev_f1, step
            best_bytes = pipe.to_bytes(exclude=["vocab"])
        log(
            f"step {step:5d}  dev {key} {dev_f1 * 100:6.2f}  layers in use {n_layers:2d}"
            f"{' (within budget)' if within else ''}  best {result.best_dev_f1 and result.best_dev_f1 * 100}"
        )
        if state_dir is not None:
            _save_state(Path(state_dir), pipe, best_bytes, {"step": step, "settings": asdict(settings), **asdict(result)})

    due_since: Optional[int] = None
    while step < settings.steps:
        batch = next(stream)
        losses: Dict[str, float] = {}
        _update(pipe, name, batch, losses, settings.distill_weight, teacher)
        masks = lm.layer_masks()  # (L_f + L_b,)
        penalty = layer_selection_penalty(masks, settings.lambda0, settings.lambda1)
        penalty.backward()
        mask_optimizer.step()
        mask_optimizer.zero_grad(set_to_none=True)
        pipe.finish_update(optimizer)  # applies the other gradients, clamps z to [0, 1]
        step += 1
        result.mask_history.append(
            {
                "step": step,
                "forward": [round(float(z), 5) for z in lm.forward_masks.detach()],
                "backward": [round(float(z), 5) for z in lm.backward_masks.detach()],
                "penalty": float(penalty.detach()),
                "loss": float(losses.get(name, 0.0)),
            }
        )
        # An evaluation falls due every eval_every steps. Masks that the task
        # gradient lifts off 0 for a step or two make the number of layers in
        # use flicker, so a due evaluation waits (up to eval_every steps) for a
        # step within the budget: only those can become the kept checkpoint.
        if step % settings.eval_every == 0:
            due_since = step if due_since is None else due_since
        within = count_nonzero_layers(lm.layer_masks()) <= settings.lambda1
        if step == settings.steps or (
            due_since is not None and (within or step - due_since >= settings.eval_every)
        ):
            evaluate_and_save()
            due_since = None
    if best_bytes is None and settings.force_budget:
        kept = force_layer_budget(lm, int(settings.lambda1))
        log(
            f"No evaluation had at most lambda1={settings.lambda1} layers in use; --force-budget keeps the "
            f"{len(kept)} layers with the largest masks (mask index {kept}, forward first) and zeroes the others"
        )
        evaluate_and_save(forced_budget=True)
    node.attrs["learn_layer_masks"] = False
    lm.set_learn_masks(False)
    if best_bytes is None:
        last = result.evaluations[-1]["n_layers"] if result.evaluations else "?"
        error = PruneError(
            f"No evaluation had at most lambda1={settings.lambda1} layers in use (last: {last}). Fix: "
            f"more --steps (the run resumes), a larger --lambda0 or --mask-learn-rate, or a larger --lambda1; "
            f"or --force-budget to keep the lambda1 layers with the largest masks."
        )
        error.history = result.mask_history
        raise error
    pipe.from_bytes(best_bytes, exclude=["vocab"])
    node.attrs["learn_layer_masks"] = False
    lm_module(pipe).set_learn_masks(False)
    return result


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


def run_fine_tuning(
    nlp: Language,
    train_examples: Sequence[Example],
    dev_examples: Sequence[Example],
    settings: FineTuneSettings,
    *,
    state_dir: Optional[Path] = None,
    log: Callable[[str], None] = print,
    teacher: Optional[CRFTeacher] = None,
) -> FineTuneResult:
    """Train a pruned pipeline further, its LMs (and their layer masks) fixed.

    Layer selection hands over the component at the first good step within
    the layer budget, trained so far with layers fading out under it; this
    continues training the component's own weights (word and character
    features, W, word BiLSTM, CRF) on the kept layers alone, the usual
    prune-then-fine-tune recipe. The learning rate decays linearly from
    ``learn_rate`` to 0. The pruned pipeline as selected is evaluated first
    (step 0), so the kept state is never worse on dev than no fine-tuning.
    On return the component holds the state with the best dev F1. With
    ``state_dir`` the run is resumable like :func:`run_layer_selection`.
    With ``settings.distill_weight > 0`` the unpruned tagger (``teacher``)
    is distilled into the pruned one.

    Raises:
        PruneError: the pipeline has no LM embedder, ``state_dir`` holds a
            state written with other settings, or distillation is on without
            a teacher.
    """
    from thinc.api import Adam

    _check_teacher(settings, teacher)

    name, pipe = find_lm_pipe(nlp)
    key = score_key(nlp)
    node = _embedder_node(pipe)
    node.attrs["learn_layer_masks"] = False
    result: Optional[FineTuneResult] = None
    best_bytes: Optional[bytes] = None
    step = 0
    if state_dir is not None and (Path(state_dir) / "state.json").is_file():
        state_dir = Path(state_dir)
        state = json.loads((state_dir / "state.json").read_text())
        _check_resumed_settings(state.get("settings"), settings, state_dir)
        pipe.from_bytes((state_dir / "component.bin").read_bytes())
        node.attrs["learn_layer_masks"] = False
        step = int(state["step"])
        result = FineTuneResult(state["best_step"], state["best_dev_f1"], state["evaluations"])
        best_bytes = (state_dir / "best.bin").read_bytes()
        log(f"Resuming fine-tuning from {state_dir} at step {step}")

    def evaluate_and_save() -> None:
        nonlocal best_bytes, result
        dev_f1 = float(nlp.evaluate(list(dev_examples))[key])
        if result is None:
            result = FineTuneResult(step, dev_f1)
        result.evaluations.append({"step": step, "dev_f1": dev_f1})
        if best_bytes is None or dev_f1 > result.best_dev_f1:
            result.best_dev_f1, result.best_step = dev_f1, step
            best_bytes = pipe.to_bytes(exclude=["vocab"])
        log(f"fine-tune step {step:5d}  dev {key} {dev_f1 * 100:6.2f}  best {result.best_dev_f1 * 100:6.2f} (step {result.best_step})")
        if state_dir is not None:
            _save_state(Path(state_dir), pipe, best_bytes, {"step": step, "settings": asdict(settings), **asdict(result)})

    if result is None:
        evaluate_and_save()
    optimizer = Adam(settings.learn_rate, grad_clip=5.0)
    stream = _batches(train_examples, settings.batch_size, random.Random(settings.seed + step))
    fix_random_seed(settings.seed + step)
    while step < settings.steps:
        optimizer.learn_rate = settings.learn_rate * (1.0 - step / settings.steps)
        _update(pipe, name, next(stream), {}, settings.distill_weight, teacher)
        pipe.finish_update(optimizer)
        step += 1
        if step % settings.eval_every == 0 or step == settings.steps:
            evaluate_and_save()
    pipe.from_bytes(best_bytes, exclude=["vocab"])
    node.attrs["learn_layer_masks"] = False
    return result


def _check_teacher(settings: Any, teacher: Optional[CRFTeacher]) -> None:
    if settings.distill_weight > 0 and teacher is None:
        raise PruneError(
            f"distill_weight={settings.distill_weight} needs the unpruned tagger's scores. Fix: pass "
            f"teacher=CRFTeacher(pipe, train_examples), built before layer selection, or set distill_weight=0."
        )


def _update(pipe, name: str, batch, losses: Dict[str, float], weight: float, teacher: Optional[CRFTeacher]) -> None:
    """Accumulate one batch's gradients (no optimizer step): the CRF NLL, or with
    ``weight > 0`` the distillation loss of :func:`distillation_update`."""
    if weight > 0:
        losses[name] = losses.get(name, 0.0) + distillation_update(pipe, batch, teacher, weight)
    else:
        pipe.update(batch, drop=0.0, sgd=None, losses=losses)


#: Settings a resumed run may change: more steps continue the same run.
RESUMABLE_CHANGES = ("steps", "force_budget")


def _check_resumed_settings(saved: Optional[Dict[str, Any]], settings: Any, state_dir: Path) -> None:
    """Refuse to resume a state written with other settings (except ``steps``).

    States written before the settings were recorded (``saved`` is None) are
    resumed as they are.

    Raises: PruneError naming the differing settings and the fix.
    """
    if saved is None:
        return
    current = asdict(settings)
    diff = {k: (saved[k], current[k]) for k in current if k in saved and saved[k] != current[k] and k not in RESUMABLE_CHANGES}
    if diff:
        listed = ", ".join(f"{k}: saved {a}, now {b}" for k, (a, b) in sorted(diff.items()))
        raise PruneError(
            f"The layer-selection state in {state_dir} was written with other settings ({listed}). "
            f"Fix: give the same settings to continue it, or use another output directory "
            f"(or delete {state_dir}) to start afresh."
        )


def _batches(examples: Sequence[Example], size: int, rng: random.Random):
    """Endless minibatches of ``size`` examples, reshuffled by ``rng`` every epoch."""
    examples = list(examples)
    while True:
        order = list(examples)
        rng.shuffle(order)
        yield from minibatch(order, size=size)


def _save_state(state_dir: Path, pipe, best_bytes: Optional[bytes], state: Dict[str, Any]) -> None:
    """Write a resumable state: the component now, the best one so far, and ``state`` as JSON."""
    state_dir.mkdir(parents=True, exist_ok=True)
    _write_atomic(state_dir / "component.bin", pipe.to_bytes(exclude=["vocab"]))
    if best_bytes is not None:
        _write_atomic(state_dir / "best.bin", best_bytes)
    _write_atomic(state_dir / "state.json", json.dumps(state).encode("utf8"))


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


# ------------------------------------------------------------------ pruning


def prune_in_place(nlp: Language) -> Dict[str, List[int]]:
    """Delete every LM layer whose mask is 0 and describe the smaller LMs in the config.

    Returns ``{"forward": kept layer indices, "backward": ...}`` (indices of the
    unpruned LMs).

    Raises:
        PruneError: the pipeline has no LM embedder.
    """
    name, pipe = find_lm_pipe(nlp)
    node = _embedder_node(pipe)
    module = node.layers[0].shims[0]._model
    lm: LMFeatures = module.lm
    keep = {"forward": kept_layers(lm.forward_masks), "backward": kept_layers(lm.backward_masks)}
    module.lm = lm.prune_layers(keep["forward"], keep["backward"])
    block = _embedder_config(nlp, name)
    block["forward_layers"] = len(keep["forward"])
    block["backward_layers"] = len(keep["backward"])
    block["learn_layer_masks"] = False
    node.attrs["learn_layer_masks"] = False
    return keep


def plot_masks(history: Sequence[Dict[str, Any]], path: Path, *, title: str = "") -> Optional[Path]:
    """Draw each z_i against the pruning step into a PNG (matplotlib, Agg).

    Returns the path, or None if matplotlib is not installed (install
    ``spacy-ldnet[plots]``).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    if not history:
        return None
    steps = [h["step"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, direction in zip(axes, ("forward", "backward")):
        n = len(history[0][direction])
        cmap = plt.get_cmap("viridis", max(n, 2))
        for i in range(n):
            ax.plot(steps, [h[direction][i] for h in history], color=cmap(i), label=f"layer {i}")
        ax.set_title(f"{direction} LM")
        ax.set_xlabel("pruning step")
        ax.set_ylim(-0.05, 1.05)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("layer mask z_i")
    axes[1].legend(fontsize=7, ncol=2, loc="center right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
