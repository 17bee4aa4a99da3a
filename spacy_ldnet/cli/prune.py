"""``spacy-ldnet prune TRAINED_PIPELINE OUTPUT_DIR``: task-guided layer selection
and exact pruning of the LMs of a trained pipeline (LD-Net section 3.3).

The steps and the files written are described in :mod:`spacy_ldnet.prune.workflow`.
This module checks the arguments (before spaCy and torch are imported, so a
bad argument is answered at once) and turns every error into one line on
stderr and exit status 1.
"""
import math
from pathlib import Path
from typing import Iterable, NoReturn, Optional, Tuple

import typer

from . import app


def fail(message: str) -> NoReturn:
    """Print ``Error: message`` as one line on stderr and exit with status 1."""
    typer.echo("Error: " + " ".join(str(message).split()), err=True)
    raise typer.Exit(1)


#: The ``minimum`` of :func:`check_numbers` for a value that must be above 0.
POSITIVE = 1e-12


def check_numbers(checks: Iterable[Tuple[str, float, float, str]]) -> None:
    """Each ``(option, value, minimum, fix)``: ``value`` must be finite and at
    least ``minimum`` (:data:`POSITIVE`: above 0), else :func:`fail` names it."""
    for option, value, minimum, fix in checks:
        if not math.isfinite(value) or value < minimum:
            bound = "above 0" if minimum == POSITIVE else f"at least {minimum:g}"
            fail(f"{option} {value}: must be {bound}. Fix: {fix}")


def check_input(path: Optional[Path], option: str, *, pipeline: bool = False) -> None:
    """An existing spaCy pipeline directory, or ``.spacy`` data (a file or a directory of them)."""
    if path is None:
        return
    if not path.exists():
        fail(f"{option} {path} not found. Fix: pass an existing path (run the project's convert and train steps first).")
    if pipeline and not (path / "config.cfg").is_file():
        fail(f"{option} {path} is not a spaCy pipeline directory (no config.cfg). Fix: pass the model-best folder that spacy train wrote.")
    if not pipeline and path.is_file() and path.suffix != ".spacy":
        fail(f"{option} {path} is not a .spacy file. Fix: convert it first, e.g. spacy-ldnet convert-conll {path} corpus/.")


def check_output(output_dir: Path, trained_pipeline: Path, names=("OUTPUT_DIR", "TRAINED_PIPELINE"), example: str = "pruned") -> None:
    """An output directory that is not a file and not inside the input pipeline."""
    out_name, in_name = names
    if output_dir.exists() and not output_dir.is_dir():
        fail(f"{out_name} {output_dir} is a file. Fix: pass a directory (it is created if missing).")
    out, trained = output_dir.resolve(), trained_pipeline.resolve()
    if out == trained or trained in out.parents:
        fail(f"{out_name} {output_dir} is inside {in_name} {trained_pipeline}. Fix: pass a directory outside it, e.g. {trained_pipeline.parent / example}.")


def write_pipeline(nlp, output: Path, save=None) -> None:
    """Save ``nlp`` to ``output`` through ``OUTPUT.partial``, renamed when complete,
    so an interrupted run never leaves a half-written pipeline at ``output``.
    ``save(nlp, path)`` replaces ``nlp.to_disk(path)``."""
    import shutil

    tmp = output.with_name(output.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    (save or (lambda n, p: n.to_disk(p)))(nlp, tmp)
    shutil.rmtree(output, ignore_errors=True)
    tmp.rename(output)


@app.command("prune")
def prune_command(
    trained_pipeline: Path = typer.Argument(..., help="A trained pipeline (e.g. training/conll03_ldnet/model-best) whose component uses an LM embedder (spacy_ldnet.LMEmbedder.v1, .v2 or .v3)."),
    output_dir: Path = typer.Argument(..., help="Output directory: model-pruned/, prune.json, layer_masks.png, state/ (rerunning resumes from state/)."),
    train: Path = typer.Option(..., "--train", help="Training data (.spacy) for the continued training."),
    dev: Path = typer.Option(..., "--dev", help="Dev data (.spacy): selects the state that is kept."),
    test: Optional[Path] = typer.Option(None, "--test", help="Test data (.spacy): F1 and words/s before and after are measured on it (else on --dev)."),
    lambda0: float = typer.Option(0.05, "--lambda0", help="Weight of the layer-selection regulariser (LD-Net lambda_0)."),
    lambda1: float = typer.Option(2, "--lambda1", help="Layer budget: layers kept across both LMs (LD-Net lambda_1)."),
    steps: int = typer.Option(1000, "--steps", help="Steps of continued training with learnable layer masks."),
    eval_every: int = typer.Option(100, "--eval-every", help="Measure dev F1, log a line and save the resumable state at every N-th step and the last; after one with more than lambda1 layers in use, also at the first later step within the budget."),
    batch_size: int = typer.Option(32, "--batch-size", help="Sentences per step."),
    learn_rate: float = typer.Option(0.0005, "--learn-rate", help="Adam learning rate of the component's weights."),
    mask_learn_rate: float = typer.Option(0.5, "--mask-learn-rate", help="SGD learning rate of the layer masks."),
    seed: int = typer.Option(0, "--seed", help="Seed of the batch order and the dropout masks."),
    finetune_steps: int = typer.Option(0, "--finetune-steps", help="After the deletion, train the pruned pipeline this many more steps (LMs and masks fixed, learning rate decaying linearly to 0) and keep its best dev state (0: off)."),
    finetune_learn_rate: float = typer.Option(0.0005, "--finetune-learn-rate", help="Adam learning rate at the start of fine-tuning."),
    force_budget: bool = typer.Option(True, "--force-budget/--strict-budget", help="If no evaluation is within the layer budget when --steps end: keep the lambda1 layers with the largest masks and go on (default), or stop with an error (--strict-budget: selection by the regulariser alone, as in LD-Net). A rerun may switch it."),
    threads: int = typer.Option(1, "--threads", help="torch threads (training and the speed measurement)."),
    gpu_id: int = typer.Option(-1, "--gpu-id", help="GPU for the continued training (-1: CPU)."),
    gold_preproc: bool = typer.Option(True, "--gold-preproc/--no-gold-preproc", help="Read the corpora with gold tokenization and sentences (as training did)."),
) -> None:
    """Select the task's useful LM layers, delete the others, and write the smaller pipeline."""
    check_input(trained_pipeline, "TRAINED_PIPELINE", pipeline=True)
    for path, option in ((train, "--train"), (dev, "--dev"), (test, "--test")):
        check_input(path, option)
    check_output(output_dir, trained_pipeline)
    check_numbers([
        ("--lambda0", lambda0, 0.0, "give the regulariser weight, e.g. --lambda0 0.05."),
        ("--lambda1", lambda1, 0.0, "give the number of layers to keep across both LMs, e.g. --lambda1 2."),
        ("--steps", steps, 1, "give the number of selection steps, e.g. --steps 1000."),
        ("--eval-every", eval_every, 1, "e.g. --eval-every 100."),
        ("--batch-size", batch_size, 1, "e.g. --batch-size 32."),
        ("--learn-rate", learn_rate, POSITIVE, "e.g. --learn-rate 0.0005."),
        ("--mask-learn-rate", mask_learn_rate, POSITIVE, "e.g. --mask-learn-rate 0.5."),
        ("--finetune-steps", finetune_steps, 0, "give 0 (no fine-tuning) or more steps."),
        ("--finetune-learn-rate", finetune_learn_rate, POSITIVE, "e.g. --finetune-learn-rate 0.0005."),
        ("--threads", threads, 1, "e.g. --threads 1."),
        ("--gpu-id", gpu_id, -1, "give -1 for the CPU or the index of a GPU."),
    ])
    from ..prune.finetune import FineTuneSettings
    from ..prune.selection import PruneSettings

    settings = PruneSettings(
        lambda0=lambda0, lambda1=lambda1, steps=steps, eval_every=eval_every, batch_size=batch_size,
        learn_rate=learn_rate, mask_learn_rate=mask_learn_rate, seed=seed, force_budget=force_budget,
    )
    finetune = FineTuneSettings(steps=finetune_steps, eval_every=eval_every, batch_size=batch_size, learn_rate=finetune_learn_rate, seed=seed)
    _run(trained_pipeline, output_dir, (train, dev, test), settings, finetune, threads=threads, gpu_id=gpu_id, gold_preproc=gold_preproc)


def _run(trained_pipeline: Path, output_dir: Path, corpora, settings, finetune, *, threads: int, gpu_id: int, gold_preproc: bool) -> None:
    import spacy
    import torch

    from ..prune.locate import PruneError, find_lm_pipe
    from ..prune.workflow import PruneData, prune_pipeline, read_corpus

    torch.set_num_threads(threads)
    if gpu_id >= 0:
        try:
            spacy.require_gpu(gpu_id)
        except Exception as e:  # spaCy and thinc raise ValueError or CUDA errors here
            fail(f"--gpu-id {gpu_id}: no usable GPU ({type(e).__name__}: {e}). Fix: pass --gpu-id -1 for the CPU.")
    try:
        nlp = spacy.load(trained_pipeline)
    except Exception as e:  # a broken pipeline can fail in any component's loader
        fail(f"TRAINED_PIPELINE {trained_pipeline} could not be loaded by spacy.load ({type(e).__name__}: {e}). Fix: pass the model-best folder that spacy train wrote.")
    train, dev, test = corpora
    try:
        find_lm_pipe(nlp)
        dev_examples = read_corpus(dev, nlp, gold_preproc=gold_preproc, option="--dev")
        data = PruneData(
            train=read_corpus(train, nlp, gold_preproc=gold_preproc, option="--train"),
            dev=dev_examples,
            test=read_corpus(test, nlp, gold_preproc=gold_preproc, option="--test") if test else dev_examples,
            test_path=str(test or dev),
        )
        prune_pipeline(nlp, trained_pipeline, output_dir, data, settings, finetune, threads=threads, log=typer.echo)
    except PruneError as e:
        fail(str(e))
    except OSError as e:
        fail(f"{e}. Fix: check that the path exists and OUTPUT_DIR {output_dir} is writable.")
