"""``spacy-ldnet prune TRAINED_PIPELINE OUTPUT_DIR``: task-guided layer selection
and exact pruning of the LMs of a trained pipeline (LD-Net section 3.3).

Writes into OUTPUT_DIR:

* ``model-pruned/``  the pruned spaCy pipeline (config.cfg describes the smaller LMs)
* ``prune.json``     kept layers, LM parameters and multiply-adds per token,
                     dev/test F1 and words/s, before and after
* ``layer_masks.png`` each z_i over the pruning steps
* ``state/``         resumable state; rerunning the command continues from it
                     (``state/finetune/`` for ``--finetune-steps``)

With ``--finetune-steps N`` the pruned pipeline is trained N more steps before
it is written (see :func:`spacy_ldnet.prune.select.run_fine_tuning`); "after"
figures then describe the fine-tuned pipeline, and ``prune.json`` keeps the
pruned-as-selected dev/test F1 under ``finetune``.

With ``--pseudo-text FILE --pseudo-sentences N`` fine-tuning also trains on N
sentences of raw text tagged by the unpruned pipeline (sequence-level
knowledge distillation, :mod:`spacy_ldnet.prune.pseudo`).
"""
import json
import os
from dataclasses import asdict
import platform
from pathlib import Path
from typing import Optional

import typer

from . import app


@app.command("prune")
def prune(
    trained_pipeline: Path = typer.Argument(..., help="A trained pipeline (e.g. training/conll03_ldnet/model-best) whose ldnet_ner uses spacy_ldnet.LMEmbedder.v1."),
    output_dir: Path = typer.Argument(..., help="Output directory (model-pruned/, prune.json, layer_masks.png, state/)."),
    train: Path = typer.Option(..., "--train", help="Training data (.spacy)."),
    dev: Path = typer.Option(..., "--dev", help="Dev data (.spacy): selects the checkpoint."),
    test: Optional[Path] = typer.Option(None, "--test", help="Test data (.spacy): F1 and words/s before/after are measured on it (else on dev)."),
    lambda0: float = typer.Option(0.05, "--lambda0", help="Regulariser weight (LD-Net lambda_0)."),
    lambda1: float = typer.Option(2, "--lambda1", help="Layer budget across both LMs (LD-Net lambda_1)."),
    steps: int = typer.Option(1000, "--steps", help="Steps of continued training."),
    eval_every: int = typer.Option(100, "--eval-every", help="Evaluate dev F1 and save a resumable state every N steps."),
    batch_size: int = typer.Option(32, "--batch-size", help="Sentences per step."),
    learn_rate: float = typer.Option(0.0005, "--learn-rate", help="Adam learning rate of the component weights."),
    mask_learn_rate: float = typer.Option(0.5, "--mask-learn-rate", help="SGD learning rate of the layer masks."),
    seed: int = typer.Option(0, "--seed"),
    finetune_steps: int = typer.Option(0, "--finetune-steps", help="After the deletion, train the pruned pipeline this many more steps (LMs and masks fixed; learning rate decaying linearly to 0) and keep its best dev state (0: off)."),
    finetune_learn_rate: float = typer.Option(0.0005, "--finetune-learn-rate", help="Adam learning rate at the start of fine-tuning."),
    distill_weight: float = typer.Option(0.0, "--distill-weight", min=0.0, max=1.0, help="Distil the unpruned tagger into the pruned one during selection and fine-tuning: loss = (1 - w) * CRF NLL + w * cross-entropy from the unpruned tagger's CRF (spacy_ldnet.prune.distill; 0: off, the LD-Net loss)."),
    pseudo_text: Optional[Path] = typer.Option(None, "--pseudo-text", help="Tokenized raw text (one sentence per line, .gz or plain), e.g. ../shared/data/lm/reuters21578.tok.txt.gz: with --pseudo-sentences N, fine-tuning also trains on N of its sentences tagged by the unpruned pipeline (spacy_ldnet.prune.pseudo)."),
    pseudo_sentences: int = typer.Option(0, "--pseudo-sentences", min=0, help="Sentences of --pseudo-text, tagged by the unpruned pipeline, added to the fine-tuning data (0: none; needs --finetune-steps)."),
    force_budget: bool = typer.Option(False, "--force-budget/--no-force-budget", help="If no evaluation is within the layer budget when --steps end, keep the lambda1 layers with the largest masks, zero the others and go on, instead of stopping with an error (not in LD-Net; a resumed run may switch it on)."),
    threads: int = typer.Option(1, "--threads", help="torch threads (training and the speed measurement)."),
    gpu_id: int = typer.Option(-1, "--gpu-id", help="GPU for the continued training (-1: CPU)."),
    gold_preproc: bool = typer.Option(True, "--gold-preproc/--no-gold-preproc", help="Read the corpora with gold tokenization and sentences (as training did)."),
) -> None:
    """Select the task's useful LM layers, delete the others, and write the smaller pipeline."""
    import spacy
    import torch
    from spacy.training import Corpus

    from ..prune.distill import make_teacher
    from ..prune.pseudo import PseudoTextError, read_sentences, teacher_labelled_examples
    from ..prune.select import (
        FineTuneSettings,
        PruneError,
        PruneSettings,
        find_lm_pipe,
        lm_cost,
        lm_module,
        plot_masks,
        prune_in_place,
        run_fine_tuning,
        run_layer_selection,
        score_key,
        words_per_second,
    )

    torch.set_num_threads(threads)
    for path, what in ((trained_pipeline, "trained pipeline"), (train, "--train"), (dev, "--dev"), (test, "--test")):
        if path is not None and not Path(path).exists():
            typer.echo(f"Error: {what} not found: {path}. Fix: pass an existing path (run the project's train step first).", err=True)
            raise typer.Exit(1)
    if pseudo_sentences > 0 and (pseudo_text is None or finetune_steps <= 0):
        typer.echo(
            "Error: --pseudo-sentences adds teacher-labelled text to fine-tuning. Fix: give --pseudo-text FILE "
            "and --finetune-steps N > 0, or leave --pseudo-sentences at 0.",
            err=True,
        )
        raise typer.Exit(1)
    if gpu_id >= 0:
        spacy.require_gpu(gpu_id)
    nlp = spacy.load(trained_pipeline)
    try:
        name, pipe = find_lm_pipe(nlp)
    except PruneError as e:
        typer.echo(f"Error: {e}", err=True)
        raise typer.Exit(1)
    key = score_key(nlp)
    train_examples = list(Corpus(str(train), gold_preproc=gold_preproc)(nlp))
    dev_examples = list(Corpus(str(dev), gold_preproc=gold_preproc)(nlp))
    test_examples = list(Corpus(str(test), gold_preproc=gold_preproc)(nlp)) if test else dev_examples
    speed_docs = [eg.predicted for eg in test_examples]
    output_dir.mkdir(parents=True, exist_ok=True)

    before_file = output_dir / "state" / "before.json"
    if before_file.is_file():  # a resumed run: the unpruned pipeline was measured already
        before = json.loads(before_file.read_text())
        typer.echo(f"Unpruned pipeline (measured before, {before_file}): {json.dumps(before)}")
    else:
        typer.echo(f"Measuring the unpruned pipeline ({key}, words/s on {len(speed_docs)} sentences, {threads} thread(s))")
        before = {
            "cost": lm_cost(lm_module(pipe)),
            "dev_f1": float(nlp.evaluate(dev_examples)[key]),
            "test_f1": float(nlp.evaluate(test_examples)[key]),
            "words_per_second": words_per_second(nlp, speed_docs),
        }
        typer.echo(json.dumps(before))
        before_file.parent.mkdir(parents=True, exist_ok=True)
        before_file.write_text(json.dumps(before))
    settings = PruneSettings(
        lambda0=lambda0, lambda1=lambda1, steps=steps, eval_every=eval_every, batch_size=batch_size,
        learn_rate=learn_rate, mask_learn_rate=mask_learn_rate, seed=seed, distill_weight=distill_weight,
        force_budget=force_budget,
    )
    pseudo_examples = []
    if pseudo_sentences > 0:
        try:
            sentences = read_sentences(pseudo_text, pseudo_sentences, seed=seed)
        except PseudoTextError as e:
            typer.echo(f"Error: {e}", err=True)
            raise typer.Exit(1)
        typer.echo(f"Tagging {len(sentences)} sentences of {pseudo_text} with the unpruned pipeline (fine-tuning pseudo-labels)")
        pseudo_examples = teacher_labelled_examples(nlp, sentences)
    if distill_weight > 0:
        typer.echo(f"Scoring {len(train_examples) + len(pseudo_examples)} training sentences with the unpruned tagger (distillation teacher, weight {distill_weight})")
    teacher = make_teacher(pipe, train_examples + pseudo_examples, distill_weight)
    try:
        result = run_layer_selection(
            nlp, train_examples, dev_examples, settings, state_dir=output_dir / "state", log=typer.echo, teacher=teacher
        )
    except PruneError as e:
        plot_masks(getattr(e, "history", []), output_dir / "layer_masks.png")
        typer.echo(f"Error: {e}", err=True)
        raise typer.Exit(1)
    history = result.mask_history
    plot = plot_masks(history, output_dir / "layer_masks.png", title=f"Layer selection ({trained_pipeline})")
    lm = lm_module(pipe)
    masks = {"forward": lm.forward_masks.detach().tolist(), "backward": lm.backward_masks.detach().tolist()}
    keep = prune_in_place(nlp)
    finetune = None
    if finetune_steps > 0:
        ft_settings = FineTuneSettings(
            steps=finetune_steps, eval_every=eval_every, batch_size=batch_size, learn_rate=finetune_learn_rate, seed=seed,
            distill_weight=distill_weight, pseudo_text=str(pseudo_text) if pseudo_sentences > 0 else "", pseudo_sentences=pseudo_sentences,
        )
        selected_test_f1 = float(nlp.evaluate(test_examples)[key])
        try:
            ft = run_fine_tuning(
                nlp, train_examples + pseudo_examples, dev_examples, ft_settings, state_dir=output_dir / "state" / "finetune",
                log=typer.echo, teacher=teacher,
            )
        except PruneError as e:
            typer.echo(f"Error: {e}", err=True)
            raise typer.Exit(1)
        finetune = {
            "settings": asdict(ft_settings),
            "best_step": ft.best_step,
            "selected_before_finetune": {"dev_f1": ft.evaluations[0]["dev_f1"], "test_f1": selected_test_f1},
            "evaluations": ft.evaluations,
        }
    pruned_dir = output_dir / "model-pruned"
    nlp.to_disk(pruned_dir)
    pruned = spacy.load(pruned_dir)
    after = {
        "cost": lm_cost(lm_module(pruned.get_pipe(name))),
        "dev_f1": float(pruned.evaluate(dev_examples)[key]),
        "test_f1": float(pruned.evaluate(test_examples)[key]),
        "words_per_second": words_per_second(pruned, speed_docs),
    }
    report = {
        "trained_pipeline": str(trained_pipeline),
        "pruned_pipeline": str(pruned_dir),
        "score": key,
        "kept_layers": keep,
        "masks_at_best_step": masks,
        "best_step": result.best_step,
        "best_dev_f1_during_selection": result.best_dev_f1,
        "settings": asdict(settings),
        "lm_parameters": {"before": before["cost"]["lstm_parameters"], "after": after["cost"]["lstm_parameters"]},
        "lm_embedding_parameters": {"before": before["cost"]["embedding_parameters"], "after": after["cost"]["embedding_parameters"]},
        "lm_multiply_adds_per_token": {
            "before": before["cost"]["multiply_adds_per_token"],
            "after": after["cost"]["multiply_adds_per_token"],
            "ratio": after["cost"]["multiply_adds_per_token"] / max(before["cost"]["multiply_adds_per_token"], 1),
        },
        "dev_f1": {"before": before["dev_f1"], "after": after["dev_f1"]},
        "test_f1": {"before": before["test_f1"], "after": after["test_f1"], "data": str(test or dev)},
        "words_per_second": {
            "before": before["words_per_second"],
            "after": after["words_per_second"],
            "ratio": after["words_per_second"] / max(before["words_per_second"], 1e-9),
            "measured_on": str(test or dev),
            "batch_size": 128,
            "torch_threads": threads,
        },
        "evaluations": result.evaluations,
        "finetune": finetune,
        "plot": str(plot) if plot else None,
        "machine": {
            "cpu_count": os.cpu_count(), "cpu": platform.processor() or platform.machine(), "cpu_model": _cpu_model(),
            # the kernels torch picked (e.g. AVX2, AVX512): float results, and so training runs, differ between them
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__,
            "python": platform.python_version(),
        },
    }
    (output_dir / "prune.json").write_text(json.dumps(report, indent=2) + "\n")
    typer.echo(f"Kept layers: forward {keep['forward']}, backward {keep['backward']}")
    typer.echo(
        f"LM multiply-adds/token: {report['lm_multiply_adds_per_token']['before']:,} -> "
        f"{report['lm_multiply_adds_per_token']['after']:,} ({report['lm_multiply_adds_per_token']['ratio']:.1%})"
    )
    typer.echo(f"LM LSTM parameters: {report['lm_parameters']['before']:,} -> {report['lm_parameters']['after']:,}")
    if finetune:
        sel = finetune["selected_before_finetune"]
        typer.echo(
            f"pruned as selected: dev {sel['dev_f1'] * 100:.2f}, test {sel['test_f1'] * 100:.2f}; "
            f"fine-tuned {finetune_steps} steps, best at step {finetune['best_step']}"
        )
    typer.echo(f"dev {key}: {before['dev_f1'] * 100:.2f} -> {after['dev_f1'] * 100:.2f}")
    typer.echo(f"test {key}: {before['test_f1'] * 100:.2f} -> {after['test_f1'] * 100:.2f}")
    typer.echo(
        f"words/s: {before['words_per_second']:,.0f} -> {after['words_per_second']:,.0f} "
        f"({report['words_per_second']['ratio']:.1f}x)"
    )
    typer.echo(f"Wrote {pruned_dir}, {output_dir / 'prune.json'}" + (f", {plot}" if plot else " (no plot: pip install spacy-ldnet[plots])"))


def _cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ("" where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""
