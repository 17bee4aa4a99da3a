"""Resumable training runs of one component (layer selection and fine-tuning).

:class:`ResumableRun` is the skeleton both runs share: it resumes from a
state directory, draws seeded minibatches, evaluates on dev, keeps the best
component state among the evaluations allowed to be kept, and saves all of
it after every evaluation.

A state directory holds ``state.json`` (step, settings, evaluations, the
names of the two files below), ``component-STEP.bin`` (the component at that
step) and ``best-STEP.bin`` (the best one so far). Each file is written to a
temporary name and renamed into place, and ``state.json`` is renamed last,
so an interrupted run leaves a state that names only complete files.
"""
import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

from spacy.language import Language
from spacy.training import Example
from spacy.util import fix_random_seed, minibatch

from .locate import PruneError, f1_score, score_key

STATE_FILE = "state.json"

#: Settings this package no longer has, with the value that meant "off". A
#: state written with another value is refused instead of resumed without it.
RETIRED_SETTINGS: Dict[str, Any] = {"distill_weight": 0.0, "pseudo_text": "", "pseudo_sentences": 0}


@dataclass
class RunResult:
    """What a run found.

    best_step: the step of the kept component state (None: no state could be kept).
    best_dev_f1: its dev F1 (0-1), or None.
    evaluations: one dict per evaluation: ``step``, ``dev_f1``, ``loss`` (mean
        task loss per step since the previous evaluation, when steps ran),
        and what the run adds (layer selection: ``n_layers``, ``within_budget``).
    mask_history: layer selection only: per step ``step``, ``forward`` and
        ``backward`` (the masks z after it), ``penalty``, ``loss``.
    """

    best_step: Optional[int] = None
    best_dev_f1: Optional[float] = None
    evaluations: List[Dict[str, Any]] = field(default_factory=list)
    mask_history: List[Dict[str, Any]] = field(default_factory=list)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file renamed into place."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def check_resumed_settings(saved: Optional[Dict[str, Any]], current: Dict[str, Any], state_dir: Path, changeable: Sequence[str]) -> None:
    """Refuse to resume a state written with other settings (``changeable`` ones excepted).

    States that recorded no settings (``saved`` is None) are resumed as they are.

    Raises:
        PruneError: naming each differing setting (saved and current value) and the fix.
    """
    if saved is None:
        return
    diff = [f"{k}: saved {saved[k]}, now {v}" for k, v in current.items() if k in saved and saved[k] != v and k not in changeable]
    diff += [f"{k}: saved {saved[k]}, a setting this version does not have" for k, off in RETIRED_SETTINGS.items() if saved.get(k, off) != off]
    if diff:
        raise PruneError(
            f"The state in {state_dir} was written with other settings ({'; '.join(sorted(diff))}). "
            f"Fix: give the same settings to continue it, or use another output directory "
            f"(or delete {state_dir}) to start afresh."
        )


def read_state(state_dir: Path) -> Dict[str, Any]:
    """The saved ``state.json`` of ``state_dir``.

    Raises:
        PruneError: it is not a JSON object with a step, or a file it names is missing.
    """
    path = state_dir / STATE_FILE
    try:
        state = json.loads(path.read_text(encoding="utf8"))
        int(state["step"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise PruneError(f"{path} is not a readable run state ({type(e).__name__}: {e}). Fix: delete {state_dir} to start afresh.") from e
    state.setdefault("files", {"component": "component.bin", "best": "best.bin"})
    missing = [name for key, name in state["files"].items() if key == "component" and not (state_dir / name).is_file()]
    if missing:
        raise PruneError(f"{path} names {missing[0]}, which is missing. Fix: delete {state_dir} to start afresh.")
    return state


def _endless_batches(examples: List[Example], size: int, rng: random.Random) -> Iterator[List[Example]]:
    while True:
        order = list(examples)
        rng.shuffle(order)
        yield from minibatch(order, size=size)


class ResumableRun:
    """Step counter, evaluations and best state of a resumable training run of one component.

    nlp, pipe: the pipeline and the component being trained.
    settings: a dataclass with at least ``steps``, ``batch_size`` and ``seed``;
        saved with the state, and compared on resume.
    dev_examples: the examples the dev F1 (``score_key(nlp)``) is measured on.
    state_dir: where the state is saved after every evaluation (None: nowhere).
    what: the run's name in log lines ("layer selection", "fine-tuning").
    changeable: settings a resumed run may change (more ``steps`` continue it).
    """

    def __init__(
        self,
        nlp: Language,
        pipe,
        settings: Any,
        dev_examples: Sequence[Example],
        *,
        state_dir: Optional[Path],
        what: str,
        log: Callable[[str], None],
        changeable: Sequence[str] = ("steps",),
    ) -> None:
        self.nlp, self.pipe, self.settings = nlp, pipe, settings
        self.dev_examples = list(dev_examples)
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.what, self.log, self.changeable = what, log, tuple(changeable)
        self.key = score_key(nlp)
        self.step = 0
        self.result = RunResult()
        self.best_bytes: Optional[bytes] = None
        self._losses: List[float] = []

    def resume(self) -> bool:
        """Load the saved state into the component and this run; False if there is none.

        Raises: PruneError as :func:`read_state` and :func:`check_resumed_settings`.
        """
        if self.state_dir is None or not (self.state_dir / STATE_FILE).is_file():
            return False
        state = read_state(self.state_dir)
        check_resumed_settings(state.get("settings"), asdict(self.settings), self.state_dir, self.changeable)
        files = state["files"]
        self.pipe.from_bytes((self.state_dir / files["component"]).read_bytes(), exclude=["vocab"])
        best = self.state_dir / files["best"] if "best" in files else None
        self.best_bytes = best.read_bytes() if best is not None and best.is_file() else None
        self.step = int(state["step"])
        self.result = RunResult(state["best_step"], state["best_dev_f1"], state.get("evaluations", []), state.get("mask_history", []))
        self.log(f"Resuming {self.what} from {self.state_dir} at step {self.step}")
        return True

    def batches(self, examples: Sequence[Example]) -> Iterator[List[Example]]:
        """Endless minibatches of ``settings.batch_size`` examples, reshuffled every
        epoch by ``random.Random(seed + step)``; also seeds random, numpy and torch
        (dropout masks) with ``seed + step``, so a run gives the same result
        whatever ran before it.

        Raises: PruneError if ``examples`` is empty.
        """
        examples = list(examples)
        if not examples:
            raise PruneError(f"No training examples for {self.what}. Fix: pass training data with at least one sentence.")
        fix_random_seed(self.settings.seed + self.step)
        return _endless_batches(examples, self.settings.batch_size, random.Random(self.settings.seed + self.step))

    def record_loss(self, loss: float) -> None:
        """Count one step's task loss towards the next evaluation's mean ``loss``."""
        self._losses.append(float(loss))

    def evaluate(self, *, eligible: bool = True, note: str = "", **marks: Any) -> Dict[str, Any]:
        """Measure dev F1 at the current step, keep the component state if it is
        ``eligible`` and the best so far, log one line, save the state.

        ``marks`` are stored with the evaluation. Returns the evaluation dict.

        Raises:
            PruneError: as :func:`spacy_ldnet.prune.locate.f1_score`.
        """
        entry: Dict[str, Any] = {"step": self.step, "dev_f1": f1_score(self.nlp, self.dev_examples, self.key), **marks}
        if self._losses:
            entry["loss"] = sum(self._losses) / len(self._losses)
            self._losses = []
        self.result.evaluations.append(entry)
        if eligible and (self.best_bytes is None or entry["dev_f1"] > self.result.best_dev_f1):
            self.result.best_dev_f1, self.result.best_step = entry["dev_f1"], self.step
            self.best_bytes = self.pipe.to_bytes(exclude=["vocab"])
        loss = f"  loss {entry['loss']:8.3f}" if "loss" in entry else ""
        best = f"{self.result.best_dev_f1 * 100:6.2f} (step {self.result.best_step})" if self.best_bytes else "none yet"
        self.log(f"{self.what} step {self.step:5d}{loss}  dev {self.key} {entry['dev_f1'] * 100:6.2f}  {note}  best {best}")
        self.save()
        return entry

    def save(self) -> None:
        """Write the state (see the module docstring); nothing without a state directory."""
        if self.state_dir is None:
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        files = {"component": f"component-{self.step}.bin"}
        write_atomic(self.state_dir / files["component"], self.pipe.to_bytes(exclude=["vocab"]))
        if self.best_bytes is not None:
            files["best"] = f"best-{self.result.best_step}.bin"
            write_atomic(self.state_dir / files["best"], self.best_bytes)
        state = {"step": self.step, "settings": asdict(self.settings), "files": files, **asdict(self.result)}
        write_atomic(self.state_dir / STATE_FILE, json.dumps(state).encode("utf8"))
        for path in [*self.state_dir.glob("component*.bin"), *self.state_dir.glob("best*.bin")]:
            if path.name not in files.values():
                path.unlink()

    def restore_best(self) -> bool:
        """Load the best kept state into the component; False if none was kept."""
        if self.best_bytes is None:
            return False
        self.pipe.from_bytes(self.best_bytes, exclude=["vocab"])
        return True
