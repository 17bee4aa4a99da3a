"""``spacy-ldnet quantize PIPELINE OUTPUT``: write a pipeline whose ``ldnet_ner``
components predict with int8 LSTMs (``precision = "int8"``, see
:mod:`spacy_ldnet.precision`), and with ``--data`` measure what it costs.

Arguments are checked before spaCy and torch are imported; every error is one
line on stderr and exit status 1.
"""
import json
import platform
from pathlib import Path
from typing import Optional

import typer

from . import app
from .prune import check_input, check_output, fail, write_pipeline


@app.command("quantize")
def quantize_command(
    pipeline: Path = typer.Argument(..., help="A trained pipeline with an ldnet_ner component (e.g. training/conll03_ldnet/model-best)."),
    output: Path = typer.Argument(..., help="Where to write the int8 pipeline (a new directory; its weights stay fp32, its config sets precision = \"int8\")."),
    data: Optional[Path] = typer.Option(None, "--data", help="Annotated .spacy data: evaluate the fp32 and the int8 pipeline on it and print both scores and words/s."),
    gold_preproc: bool = typer.Option(False, "--gold-preproc", help="With --data: use the data's own tokens and sentences, as spacy evaluate --gold-preproc (the CoNLL setting)."),
    metrics: Optional[Path] = typer.Option(None, "--metrics", help="With --data: also write the figures to this JSON file."),
) -> None:
    """Predict with int8 dynamically quantized LSTMs (CPU); training and the saved weights stay fp32."""
    check_input(pipeline, "PIPELINE", pipeline=True)
    check_input(data, "--data")
    if metrics is not None and data is None:
        fail("--metrics needs --data (the figures come from evaluating on it).")
    check_output(output, pipeline, ("OUTPUT", "PIPELINE"), "int8")
    _quantize(pipeline, output, data, gold_preproc, metrics)


def _ldnet_components(config) -> list:
    return [name for name, block in config["components"].items() if block.get("factory") == "ldnet_ner"]


def _quantize(pipeline: Path, output: Path, data: Optional[Path], gold_preproc: bool, metrics: Optional[Path]) -> None:
    import spacy
    import torch
    from spacy.util import load_config

    names = _ldnet_components(load_config(pipeline / "config.cfg", interpolate=False))
    if not names:
        fail(f"PIPELINE {pipeline} has no ldnet_ner component. Fix: pass a pipeline trained with ldnet_ner.")
    overrides = {"components": {name: {"precision": "int8"} for name in names}}
    try:
        nlp = spacy.load(pipeline, config=overrides)
    except Exception as e:  # a pipeline folder spaCy cannot read: one line, not a traceback
        fail(f"PIPELINE {pipeline} could not be loaded: {e}. Fix: pass a pipeline saved by spacy train.")
    write_pipeline(nlp, output)
    typer.echo(f"{output}: {', '.join(names)} predict with int8 LSTMs (precision = \"int8\")")
    if data is None:
        return
    torch.set_num_threads(1)
    rows = {}
    for precision, path in (("fp32", pipeline), ("int8", output)):
        rows[precision] = _evaluate(spacy.load(path), names[0], data, gold_preproc)
    for precision, row in rows.items():
        typer.echo(f"{precision}: {row['score_name']} {row['score']:.2f}, {row['words_per_second']:,.0f} words/s")
    diff = rows["int8"]["score"] - rows["fp32"]["score"]
    speed = rows["int8"]["words_per_second"] / rows["fp32"]["words_per_second"]
    typer.echo(f"int8 - fp32: {diff:+.2f} {rows['fp32']['score_name']}, {speed:.2f}x words/s (1 torch thread)")
    if metrics is not None:
        metrics.parent.mkdir(parents=True, exist_ok=True)
        metrics.write_text(json.dumps({
            "pipeline": str(pipeline), "data": str(data), "gold_preproc": gold_preproc, **rows,
            "score_difference": diff, "speed_ratio": speed, "torch_threads": 1,
            "cpu": platform.processor() or platform.machine(),
        }, indent=2) + "\n")


def _evaluate(nlp, name: str, data: Path, gold_preproc: bool) -> dict:
    """The component's main F1 (x100) and spaCy's words/s on ``data``."""
    from spacy.training import Corpus

    examples = list(Corpus(data, gold_preproc=gold_preproc)(nlp))
    nlp.evaluate(examples[:32], batch_size=128)  # warm-up: the int8 copies are made at the first prediction
    scores = nlp.evaluate(examples, batch_size=128)
    spans_key = nlp.get_pipe(name).spans_key
    key = "ents_f" if spans_key is None else f"spans_{spans_key}_f"
    return {"score_name": key, "score": 100 * float(scores[key] or 0.0), "words_per_second": float(scores["speed"])}
