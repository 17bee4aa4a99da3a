"""``spacy-ldnet lm-info PATH``: describe a pretrained LM checkpoint.

Prints the direction, layers, widths, parameter counts (encoder LSTMs / input
embedding / output layer / total) and the encoder's multiply-adds per token
(gate matrix products only, see
:meth:`spacy_ldnet.lm.model.DenseLSTMEncoder.multiply_adds_per_token`).
``--json`` prints the same as one JSON object. An unreadable checkpoint
ends the command with one line on stderr naming the file and the fix, exit
status 1.
"""
import json
from pathlib import Path
from typing import Any, Dict

import typer

from . import app
from .usage_errors import OneLineUsageErrors


def lm_info(path: Path) -> Dict[str, Any]:
    """Summary dict of the checkpoint directory ``path``.

    Raises:
        spacy_ldnet.lm.LMCheckpointError: the checkpoint cannot be read.
    """
    from ..lm.checkpoint import load_lm, read_lm_config

    model, vocab, extra = load_lm(path)
    _, meta = read_lm_config(path)
    info = {"path": str(path), "weights_dtype": meta["weights_dtype"], "format_version": meta["version"]}
    info.update(model.summary())
    info["extra"] = extra
    return info


def format_lm_info(info: Dict[str, Any]) -> str:
    """Human-readable table of :func:`lm_info`'s dict."""
    p = info["parameters"]
    rows = [
        ("checkpoint", info["path"]),
        ("direction", info["direction"]),
        ("output layer", info["output"] + (f" (cutoffs {info['cutoffs']})" if info.get("cutoffs") else "")),
        ("layers", str(info["num_layers"])),
        ("embed dim", str(info["embed_dim"])),
        ("hidden dim", str(info["hidden_dim"])),
        ("encoder output dim", str(info["encoder_output_dim"])),
        ("projection dim", str(info["proj_dim"]) if info["proj_dim"] else "none"),
        ("vocab (input / output)", f"{info['vocab_size']:,} / {info['output_vocab_size']:,}"),
        ("input embedding", "frozen" if info["freeze_input"] else "trained"),
        ("params: encoder", f"{p['encoder']:,}"),
        ("params: input embedding", f"{p['input_embedding']:,}"),
        ("params: output layer", f"{p['output_layer']:,}"),
        ("params: total", f"{p['total']:,} ({p['trainable']:,} trainable)"),
    ]
    table = info.get("frozen_target_table")
    if table:
        rows.append(
            ("frozen target table", f"{table['shape'][0]:,} x {table['shape'][1]} ({table['rows_with_vector']:,} with a vector)")
        )
    rows.append(("encoder mult-adds / token", f"{info['multiply_adds_per_token']['encoder']:,}"))
    rows.append(("weights dtype", info["weights_dtype"]))
    for key, value in (info.get("extra") or {}).items():
        if isinstance(value, (str, int, float, bool)) or value is None:
            rows.append((f"extra: {key}", str(value)))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


@app.command("lm-info", cls=OneLineUsageErrors)
def lm_info_command(
    path: Path = typer.Argument(..., help="LM checkpoint directory (config.json, model.safetensors, vocab.txt)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
) -> None:
    """Describe a pretrained LM: direction, layers, widths, parameters, multiply-adds per token."""
    from ..lm.checkpoint import LMCheckpointError

    try:
        info = lm_info(path)
    except LMCheckpointError as e:
        typer.echo("Error: " + str(e).replace("\n", " "), err=True)
        raise typer.Exit(code=1)
    if as_json:
        typer.echo(json.dumps(info, indent=2))
    else:
        typer.echo(format_lm_info(info))
