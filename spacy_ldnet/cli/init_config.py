"""``spacy-ldnet init-config CONFIG OUTPUT --train TRAIN``: a copy of a training
config whose step budget and LM-feature dropout fit the training set
(:func:`spacy_ldnet.budget.sized_settings`).

Arguments are checked before spaCy is imported; every error is one line on
stderr and exit status 1.
"""
from pathlib import Path

import typer

from . import app
from .prune import check_input, fail


@app.command("init-config")
def init_config_command(
    config: Path = typer.Argument(..., help="A training config, e.g. configs/conll03_ldnet.cfg (with LM features) or configs/conll03_ner.cfg."),
    output: Path = typer.Argument(..., help="Where to write the sized config (.cfg)."),
    train: Path = typer.Option(..., "--train", help="Your training data (.spacy): its sentences set the budget."),
) -> None:
    """Set [training] max_steps to 2 per training sentence (at least 1,000, at most CONFIG's own), eval_frequency to a tenth of it, and, with LM features and at most 1,000 training sentences, lm_dropout to 0.3."""
    if not config.is_file():
        fail(f"CONFIG {config} not found. Fix: pass a training config such as configs/conll03_ldnet.cfg.")
    check_input(train, "--train")
    if output.exists() and output.is_dir():
        fail(f"OUTPUT {output} is a directory. Fix: pass a .cfg file path.")
    from spacy.util import load_config

    from ..budget import sized_settings, training_sentences

    try:
        cfg = load_config(config, interpolate=False)
        config_max = int(cfg["training"]["max_steps"])
    except Exception as e:  # not a spaCy config: one line, not a traceback
        fail(f"CONFIG {config} is not a spaCy training config with [training] max_steps ({e}).")
    try:
        n = training_sentences(train)
    except ValueError as e:
        fail(str(e))
    if n < 1:
        fail(f"--train {train} holds no sentences. Fix: check the converted data.")
    settings = sized_settings(n, cfg)
    changes = []
    for dotted, value in settings.items():
        *sections, key = dotted.split(".")
        node = cfg
        for section in sections:
            node = node[section]
        if node.get(key) != value:
            changes.append(f"{dotted} {value:,} (was {node.get(key):,})")
        node[key] = value
    output.parent.mkdir(parents=True, exist_ok=True)
    cfg.to_disk(output, interpolate=False)
    typer.echo(f"{output}: {n:,} training sentences -> " + ("; ".join(changes) or f"CONFIG's settings (max_steps {config_max:,})"))
