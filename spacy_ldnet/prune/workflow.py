"""The steps of ``spacy-ldnet prune``: measure the trained pipeline, select
layers, delete the others, optionally fine-tune, write and measure the result.

Writes into the output directory:

* ``model-pruned/``   the pruned spaCy pipeline (its config describes the smaller LMs)
* ``prune.json``      kept layers, LM parameters and multiply-adds per token,
                      dev/test F1 and words/s, before and after
                      (:func:`spacy_ldnet.prune.report.build_report`)
* ``layer_masks.png`` each z_i over the selection steps
* ``state/``          resumable state (``state/before.json``: the unpruned
                      pipeline's figures; ``state/finetune/``: fine-tuning);
                      running the same command again continues from it
"""
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from spacy.language import Language
from spacy.training import Example

from .costs import lm_cost, words_per_second
from .finetune import FineTuneSettings, run_fine_tuning
from .locate import PruneError, f1_score, find_lm_pipe, lm_module, score_key
from .report import build_report, plot_masks, summary_lines
from .selection import PruneSettings, run_layer_selection
from .state import write_atomic
from .surgery import prune_in_place


@dataclass
class PruneData:
    """The examples a prune run reads: ``train`` (selection and fine-tuning),
    ``dev`` (selects the kept state), ``test`` (F1 and words/s before and
    after; the dev examples when no test data is given) and ``test_path``
    (what ``test`` was read from, for the report)."""

    train: List[Example]
    dev: List[Example]
    test: List[Example]
    test_path: str


def read_corpus(path: Path, nlp: Language, *, gold_preproc: bool, option: str) -> List[Example]:
    """The examples of a ``.spacy`` file (or a directory of them), read as spaCy's ``Corpus`` reads them.

    Raises:
        PruneError: the file cannot be read as a DocBin, or holds no document.
    """
    from spacy.training import Corpus

    try:
        examples = list(Corpus(str(path), gold_preproc=gold_preproc)(nlp))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise PruneError(f"{option} {path} could not be read as spaCy training data ({type(e).__name__}: {e}). Fix: pass a .spacy file written by spacy-ldnet convert-conll or spacy convert.")
    if not examples:
        raise PruneError(f"{option} {path} holds no documents. Fix: pass a non-empty .spacy file.")
    return examples


def measure(nlp: Language, data: PruneData, key: str) -> Dict[str, Any]:
    """LM cost, dev and test F1 and words/s of ``nlp`` (see :func:`spacy_ldnet.prune.report.build_report`)."""
    _, pipe = find_lm_pipe(nlp)
    return {
        "cost": lm_cost(lm_module(pipe)),
        "dev_f1": f1_score(nlp, data.dev, key),
        "test_f1": f1_score(nlp, data.test, key),
        "words_per_second": words_per_second(nlp, [eg.predicted for eg in data.test]),
    }


def measure_unpruned(nlp: Language, data: PruneData, key: str, state_dir: Path, log: Callable[[str], None]) -> Dict[str, Any]:
    """:func:`measure` of the unpruned pipeline, kept in ``state_dir/before.json``
    so that a rerun reports the same figures without measuring again.

    Raises: PruneError if ``before.json`` is not JSON."""
    path = state_dir / "before.json"
    if path.is_file():
        try:
            before = json.loads(path.read_text(encoding="utf8"))
        except ValueError as e:
            raise PruneError(f"{path} is not valid JSON ({e}). Fix: delete it; the unpruned pipeline is measured again.") from e
        log(f"Unpruned pipeline (measured before, {path}): {json.dumps(before)}")
        return before
    log(f"Measuring the unpruned pipeline ({key}; words/s on {len(data.test)} sentences)")
    before = measure(nlp, data, key)
    log(json.dumps(before))
    state_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(before).encode("utf8"))
    return before


def fine_tune(nlp: Language, data: PruneData, settings: FineTuneSettings, state_dir: Path, log: Callable[[str], None]) -> Dict[str, Any]:
    """:func:`spacy_ldnet.prune.finetune.run_fine_tuning` of the pruned pipeline;
    returns the ``finetune`` entry of ``prune.json``."""
    selected_test_f1 = f1_score(nlp, data.test, score_key(nlp))
    result = run_fine_tuning(nlp, data.train, data.dev, settings, state_dir=state_dir, log=log)
    return {
        "settings": asdict(settings),
        "best_step": result.best_step,
        "selected_before_finetune": {"dev_f1": result.evaluations[0]["dev_f1"], "test_f1": selected_test_f1},
        "evaluations": result.evaluations,
    }


def prune_pipeline(
    nlp: Language,
    trained_pipeline: Path,
    output_dir: Path,
    data: PruneData,
    settings: PruneSettings,
    finetune_settings: Optional[FineTuneSettings] = None,
    *,
    threads: int = 1,
    log: Callable[[str], None] = print,
) -> Dict[str, Any]:
    """Select, delete, optionally fine-tune, write and report (see the module docstring).

    nlp: the loaded ``trained_pipeline`` (changed in place).
    finetune_settings: None or ``steps == 0``: no fine-tuning.

    Returns the report written to ``output_dir/prune.json``.

    Raises:
        PruneError: as :func:`spacy_ldnet.prune.selection.run_layer_selection`
            (the mask plot is written first) and
            :func:`spacy_ldnet.prune.finetune.run_fine_tuning`.
    """
    import spacy

    _, pipe = find_lm_pipe(nlp)
    key = score_key(nlp)
    state_dir = output_dir / "state"
    before = measure_unpruned(nlp, data, key, state_dir, log)
    try:
        selection = run_layer_selection(nlp, data.train, data.dev, settings, state_dir=state_dir, log=log)
    except PruneError as e:
        plot_masks(getattr(e, "history", []), output_dir / "layer_masks.png")
        raise
    plot = plot_masks(selection.mask_history, output_dir / "layer_masks.png", title=f"Layer selection ({trained_pipeline})")
    lm = lm_module(pipe)
    masks = {"forward": lm.forward_masks.detach().tolist(), "backward": lm.backward_masks.detach().tolist()}
    kept = prune_in_place(nlp)
    finetune = None
    if finetune_settings is not None and finetune_settings.steps > 0:
        finetune = fine_tune(nlp, data, finetune_settings, state_dir / "finetune", log)
    pruned_dir = output_dir / "model-pruned"
    nlp.to_disk(pruned_dir)
    after = measure(spacy.load(pruned_dir), data, key)
    paths = {
        "trained_pipeline": str(trained_pipeline),
        "pruned_pipeline": str(pruned_dir),
        "plot": str(plot) if plot else None,
        "measured_on": data.test_path,
    }
    report = build_report(
        paths=paths, key=key, kept=kept, masks=masks, selection=selection, settings=settings,
        before=before, after=after, finetune=finetune, threads=threads,
    )
    write_atomic(output_dir / "prune.json", (json.dumps(report, indent=2) + "\n").encode("utf8"))
    for line in summary_lines(report):
        log(line)
    log(f"Wrote {pruned_dir}, {output_dir / 'prune.json'}" + (f", {plot}" if plot else " (no plot: pip install spacy-ldnet[plots])"))
    return report
