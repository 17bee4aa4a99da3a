"""Write a copy of an LM pair that keeps only the given layers (LD-Net section 3.3).

The layers are deleted exactly as ``spacy-ldnet prune`` deletes them
(:meth:`spacy_ldnet.lm.model.DenseLSTMLM.prune`), so a tagger trained from
scratch on the copy (``forward_layers`` / ``backward_layers`` = the number of
kept layers, ``--paths.lm`` = the copy) sees the same LM features as a pruned
pipeline with that selection.

Usage:
    python project/prune_lms.py SRC DST --forward 1,3 --backward 0,3,4,7

SRC and DST hold ``forward/`` and ``backward/`` LM checkpoints
(:func:`spacy_ldnet.lm.checkpoint.save_lm`); an empty list keeps no layer.
"""
from pathlib import Path
from typing import List

import typer

from spacy_ldnet.lm.checkpoint import load_lm, save_lm


def _layers(text: str) -> List[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated layer indices such as 0,3,4 (or ''), got {text!r}")


def main(
    src: Path = typer.Argument(..., help="LM pair to prune (forward/, backward/)"),
    dst: Path = typer.Argument(..., help="where to write the pruned pair"),
    forward: str = typer.Option("", help="forward layers to keep, e.g. 0,3"),
    backward: str = typer.Option("", help="backward layers to keep, e.g. 0,3,4,7"),
) -> None:
    pruned = {}
    for direction, keep in (("forward", _layers(forward)), ("backward", _layers(backward))):
        lm, vocab, extra = load_lm(src / direction)
        try:
            pruned[direction] = (lm.prune(keep), vocab, {**extra, "pruned_from": str(src / direction), "kept_layers": keep})
        except ValueError as e:  # nothing is written unless both selections are valid
            raise typer.BadParameter(f"--{direction} {keep}: {e}")
        typer.echo(f"{direction}: keeping {keep} of {lm.config.num_layers} layers")
    for direction, (lm, vocab, extra) in pruned.items():
        save_lm(lm, vocab, dst / direction, extra=extra)
        typer.echo(f"wrote {dst / direction}")


if __name__ == "__main__":
    typer.run(main)
