"""``spacy-ldnet calibrate PIPELINE DEV OUTPUT``: fit the temperature of an
``ldnet_ner`` component's span probabilities on a dev set (temperature
scaling; the objective and the error measure are described in
:mod:`spacy_ldnet.ner.calibration`) and write the pipeline with it.

Writes ``OUTPUT/`` (the pipeline, ``temperature`` set in its ``config.cfg``),
``OUTPUT/calibration.json`` (temperature, span log loss and ECE before and
after, the reliability bins) and ``OUTPUT/reliability.png`` (before/after
reliability diagram; needs matplotlib). Arguments are checked before spaCy and
torch are imported; every error is one line on stderr and exit status 1.
"""
import json
from pathlib import Path
from typing import Optional

import typer

from . import app
from .prune import check_input, fail


@app.command("calibrate")
def calibrate_command(
    pipeline: Path = typer.Argument(..., help="A trained pipeline with an ldnet_ner component (e.g. training/conll03/model-best)."),
    dev: Path = typer.Argument(..., help="Held-out data with gold entities (or spans), as .spacy (a file or a folder of them)."),
    output: Path = typer.Argument(..., help="Where to write the calibrated pipeline, calibration.json and reliability.png."),
    component: Optional[str] = typer.Option(None, "--component", help="The ldnet_ner component to calibrate (needed only if the pipeline has several)."),
    batch_size: int = typer.Option(64, "--batch-size", help="Docs per batch."),
    gpu_id: int = typer.Option(-1, "--gpu-id", help="GPU to use, -1 for CPU."),
) -> None:
    """Fit one temperature for the span probabilities on DEV; report ECE (15 bins) before and after."""
    check_input(pipeline, "PIPELINE", pipeline=True)
    check_input(dev, "DEV")
    if batch_size < 1:
        fail(f"--batch-size {batch_size}: must be at least 1. Fix: e.g. --batch-size 64.")
    if output.exists() and not output.is_dir():
        fail(f"OUTPUT {output} is a file. Fix: pass a directory (it is created if missing).")
    if output.resolve() == pipeline.resolve() or pipeline.resolve() in output.resolve().parents:
        fail(f"OUTPUT {output} is inside PIPELINE {pipeline}. Fix: pass a directory outside it, e.g. {pipeline.parent / 'calibrated'}.")
    _calibrate(pipeline, dev, output, component, batch_size, gpu_id)


def _calibrate(pipeline: Path, dev: Path, output: Path, component: Optional[str], batch_size: int, gpu_id: int) -> None:
    import spacy
    from spacy.cli._util import setup_gpu
    from spacy.training import Corpus

    from ..ner.calibration import collect_forecasts, expected_calibration_error, fit_temperature, plot_reliability, reliability_bins

    setup_gpu(gpu_id, silent=True)
    try:
        nlp = spacy.load(pipeline)
    except Exception as e:  # a pipeline folder spaCy cannot read: one line, not a traceback
        fail(f"PIPELINE {pipeline} could not be loaded: {e}. Fix: pass a pipeline saved by spacy train.")
    name = _component(nlp, pipeline, component)
    try:
        examples = list(Corpus(dev)(nlp))
    except Exception as e:
        fail(f"DEV {dev} could not be read as .spacy data: {e}. Fix: convert it, e.g. spacy-ldnet convert-conll.")
    forecasts = collect_forecasts(nlp, name, examples, batch_size)
    if not len(forecasts.correct):
        fail(f"DEV {dev}: the pipeline predicts no span on its {len(examples)} docs, so there is nothing to calibrate. Fix: pass a dev set with entities.")
    if forecasts.correct.all() or not forecasts.correct.any():
        kind = "correct" if forecasts.correct.all() else "wrong"
        fail(f"DEV {dev}: all {len(forecasts.correct)} predicted spans are {kind}, so no temperature is best. Fix: pass a larger held-out set.")
    before = nlp.get_pipe(name).temperature
    temperature = fit_temperature(forecasts.nll)
    report = {"pipeline": str(pipeline), "dev": str(dev), "component": name, "n_docs": len(examples),
              "n_spans": int(len(forecasts.correct)), "n_correct": int(forecasts.correct.sum()),
              "objective": "mean negative log-likelihood of 'predicted span is correct' (nats per span)",
              "temperature": {"before": before, "after": temperature}}
    panels = {}
    for when, t in (("before", before), ("after", temperature)):
        probs = forecasts.probabilities(t)
        ece = expected_calibration_error(probs, forecasts.correct)
        bins = reliability_bins(probs, forecasts.correct)
        report[when] = {"nll": forecasts.nll(t), "ece": ece, "bins": bins}
        panels[f"{when} (temperature {t:.3g})"] = (bins, ece)
    calibrated = spacy.load(pipeline, config={"components": {name: {"temperature": temperature}}})
    calibrated.to_disk(output)
    (output / "calibration.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf8")
    png = plot_reliability(panels, output / "reliability.png")
    typer.echo(
        f"temperature {before:g} -> {temperature:.4g} on {report['n_spans']} spans ({report['n_correct']} correct); "
        f"ECE {report['before']['ece']:.4f} -> {report['after']['ece']:.4f}; "
        f"log loss {report['before']['nll']:.4f} -> {report['after']['nll']:.4f} nats/span"
    )
    typer.echo(f"wrote {output} (config temperature = {temperature:.6g}), {output / 'calibration.json'}"
               + (f", {png}" if png else "; no reliability.png: matplotlib is not installed (pip install spacy-ldnet[plots])"))


def _component(nlp, pipeline: Path, component: Optional[str]) -> str:
    names = [n for n in nlp.pipe_names if nlp.get_pipe_meta(n).factory == "ldnet_ner"]
    if component is not None:
        if component not in names:
            fail(f"--component {component} is not an ldnet_ner component of PIPELINE {pipeline} (those are: {', '.join(names) or 'none'}). Fix: pass one of them.")
        return component
    if len(names) != 1:
        found = f"several ({', '.join(names)})" if names else "none"
        fail(f"PIPELINE {pipeline} has {found} ldnet_ner components. Fix: " + ("pass --component NAME." if names else "pass a pipeline trained with ldnet_ner."))
    return names[0]
