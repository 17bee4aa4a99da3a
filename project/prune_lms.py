"""Write a copy of an LM pair that keeps only the given layers (LD-Net section 3.3).

The layers are deleted exactly as ``spacy-ldnet prune`` deletes them
(:meth:`spacy_ldnet.lm.model.DenseLSTMLM.prune`), so a tagger trained from
scratch on the copy (``forward_layers`` / ``backward_layers`` = the number of
kept layers, ``--paths.lm`` = the copy) sees the same LM features as a pruned
pipeline with that selection.

Usage:
    python project/prune_lms.py SRC DST --forward 1,3 --backward 0,3,4,7
    python project/prune_lms.py SRC DST --selection prune.json \
        --config configs/conll03_ldnet.cfg --config-out retrain.cfg

SRC and DST hold ``forward/`` and ``backward/`` LM checkpoints
(:func:`spacy_ldnet.lm.checkpoint.save_lm`); an empty list keeps no layer.
``--selection`` takes the layers from the ``kept_layers`` of a ``prune.json``
written by ``spacy-ldnet prune`` instead. ``--config`` / ``--config-out`` copy a
training config with ``paths.lm`` set to DST and every LM embedder's
``forward_layers`` / ``backward_layers`` set to the kept counts, so that
``spacy train CONFIG_OUT`` builds torch shapes that match the cut LMs (spaCy
rebuilds a pipeline from its config before loading weights). Bad input
(unknown layer, unreadable selection, a config without an LM embedder) is
named and nothing is written.
"""
import json
from pathlib import Path
from typing import Dict, List, Optional

import typer
from spacy.util import load_config

from spacy_ldnet.lm.checkpoint import load_lm, save_lm
from spacy_ldnet.prune.select import LM_ARCHITECTURES, find_lm_embedder_config

DIRECTIONS = ("forward", "backward")


def _layers(text: str) -> List[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated layer indices such as 0,3,4 (or ''), got {text!r}")


def read_selection(path: Path) -> Dict[str, List[int]]:
    """``kept_layers`` of a ``spacy-ldnet prune`` report: ``{"forward": [...], "backward": [...]}``.

    Raises typer.BadParameter naming the file and the fix when it is missing,
    not JSON, or has no list of layer indices per direction.
    """
    try:
        kept = json.loads(path.read_text(encoding="utf8"))["kept_layers"]
        selection = {d: [int(i) for i in kept[d]] for d in DIRECTIONS}
    except FileNotFoundError:
        raise typer.BadParameter(f"{path} does not exist: run `spacy project run prune .` (or spacy-ldnet prune) first")
    except (ValueError, KeyError, TypeError) as e:
        raise typer.BadParameter(
            f"{path} is not a spacy-ldnet prune report with kept_layers.forward/backward lists ({type(e).__name__}: {e}); "
            "rerun the prune step to rewrite it"
        )
    return selection


def retrain_config(config_path: Path, lm_dir: Path, counts: Dict[str, int]):
    """The training config at ``config_path`` with ``paths.lm = lm_dir`` and the
    layer counts set in every component's LM embedder block (found as
    ``spacy-ldnet prune`` finds it, :func:`find_lm_embedder_config`)."""
    config = load_config(config_path, interpolate=False)
    found = []
    for name, component in config.get("components", {}).items():
        block = find_lm_embedder_config(component)
        if block is not None:
            block["forward_layers"] = counts["forward"]
            block["backward_layers"] = counts["backward"]
            found.append(name)
    if not found:
        raise typer.BadParameter(
            f"{config_path} has no component with an LM embedder ({', '.join(LM_ARCHITECTURES)}): "
            "pass an LD-Net config such as configs/conll03_ldnet.cfg"
        )
    config.setdefault("paths", {})["lm"] = str(lm_dir)
    return config, found


def main(
    src: Path = typer.Argument(..., help="LM pair to prune (forward/, backward/)"),
    dst: Path = typer.Argument(..., help="where to write the pruned pair"),
    forward: str = typer.Option("", help="forward layers to keep, e.g. 0,3"),
    backward: str = typer.Option("", help="backward layers to keep, e.g. 0,3,4,7"),
    selection: Optional[Path] = typer.Option(None, help="take the layers from this prune.json's kept_layers"),
    config: Optional[Path] = typer.Option(None, help="training config to copy with the pruned LM shapes"),
    config_out: Optional[Path] = typer.Option(None, help="where to write that config"),
) -> None:
    if selection is not None:
        if forward or backward:
            raise typer.BadParameter("give either --selection or --forward/--backward, not both")
        keep = read_selection(selection)
    else:
        keep = {"forward": _layers(forward), "backward": _layers(backward)}
    if (config is None) != (config_out is None):
        raise typer.BadParameter("--config and --config-out go together")
    new_config = None
    if config is not None:
        new_config, names = retrain_config(config, dst, {d: len(keep[d]) for d in DIRECTIONS})
    pruned = {}
    for direction in DIRECTIONS:
        lm, vocab, extra = load_lm(src / direction)
        try:
            pruned[direction] = (
                lm.prune(keep[direction]), vocab,
                {**extra, "pruned_from": str(src / direction), "kept_layers": keep[direction]},
            )
        except ValueError as e:  # nothing is written unless both selections are valid
            raise typer.BadParameter(f"--{direction} {keep[direction]}: {e}")
        typer.echo(f"{direction}: keeping {keep[direction]} of {lm.config.num_layers} layers")
    for direction, (lm, vocab, extra) in pruned.items():
        save_lm(lm, vocab, dst / direction, extra=extra)
        typer.echo(f"wrote {dst / direction}")
    if new_config is not None:
        config_out.parent.mkdir(parents=True, exist_ok=True)
        new_config.to_disk(config_out, interpolate=False)
        typer.echo(f"wrote {config_out} (components {', '.join(names)}: forward_layers {len(keep['forward'])}, "
                   f"backward_layers {len(keep['backward'])}; paths.lm {dst})")


if __name__ == "__main__":
    typer.run(main)
