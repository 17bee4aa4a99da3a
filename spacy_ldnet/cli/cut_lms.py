"""``spacy-ldnet cut-lms LM_DIR OUT_DIR``: a copy of an LM pair that keeps only
the given layers, for training a tagger from scratch on a layer selection
(see :mod:`spacy_ldnet.prune.surgery`)."""
from pathlib import Path
from typing import Optional

import typer

from . import app
from .prune import fail


@app.command("cut-lms")
def cut_lms_command(
    lm_dir: Path = typer.Argument(..., help="The LM pair to cut: a folder with forward/ and backward/ checkpoints (e.g. lms/ldnet)."),
    out_dir: Path = typer.Argument(..., help="Where to write the cut pair (forward/, backward/)."),
    forward: Optional[str] = typer.Option(None, "--forward", help="Forward layers to keep, ascending, e.g. 0,3 ('none' or left out: none)."),
    backward: Optional[str] = typer.Option(None, "--backward", help="Backward layers to keep, ascending, e.g. 0,3,4,7 ('none' or left out: none)."),
    selection: Optional[Path] = typer.Option(None, "--selection", help="Take the layers from the kept_layers of this prune.json (written by spacy-ldnet prune) instead."),
    config: Optional[Path] = typer.Option(None, "--config", help="A training config to copy with paths.lm = OUT_DIR and the cut pair's layer counts (with --config-out)."),
    config_out: Optional[Path] = typer.Option(None, "--config-out", help="Where to write that config."),
) -> None:
    """Write LM checkpoints cut to a layer selection (and a training config that fits them)."""
    from ..prune import PruneError
    from ..prune.layers import check_out_dir, selection_from_options

    if not (lm_dir / "forward").is_dir() or not (lm_dir / "backward").is_dir():
        fail(f"LM_DIR {lm_dir} has no forward/ and backward/ checkpoints. Fix: pass a folder written by spacy-ldnet pretrain-lm, e.g. lms/ldnet.")
    if (config is None) != (config_out is None):
        fail("--config and --config-out go together. Fix: give both (the config to copy and where to write it) or neither.")
    if config is not None and not config.is_file():
        fail(f"--config {config} not found. Fix: pass a training config such as configs/conll03_ldnet.cfg.")
    if config is not None and config_out.resolve() == config.resolve():
        fail(f"--config-out {config_out} is --config: the copy would overwrite it. Fix: pass another --config-out.")
    try:
        check_out_dir(lm_dir, out_dir)
        keep = selection_from_options(forward, backward, selection)
    except PruneError as e:
        fail(str(e))
    _cut(lm_dir, out_dir, keep, config, config_out)


def _cut(lm_dir: Path, out_dir: Path, keep, config: Optional[Path], config_out: Optional[Path]) -> None:
    from ..prune import PruneError
    from ..prune.surgery import cut_lm_pair, retrain_config, write_retrain_config

    try:
        new_config = retrain_config(config, out_dir, keep) if config is not None else None
        cut_lm_pair(lm_dir, out_dir, keep, log=typer.echo)
    except PruneError as e:
        fail(str(e))
    if new_config is not None:
        retrain, names = new_config
        write_retrain_config(retrain, config_out)
        typer.echo(
            f"wrote {config_out} (components {', '.join(names)}: forward_layers {len(keep['forward'])}, "
            f"backward_layers {len(keep['backward'])}; paths.lm {out_dir})"
        )
