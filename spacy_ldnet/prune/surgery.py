"""Exact deletion of LM layers (LD-Net section 3.3), from a pipeline or from LM checkpoints.

* :func:`prune_in_place` deletes every layer whose mask z is 0 from a
  pipeline's LM features and rewrites its config, so ``nlp.to_disk`` gives a
  pipeline that ``spacy.load`` rebuilds.
* :func:`cut_lm_pair` writes a copy of a forward/backward LM pair that keeps
  only the given layers (``spacy-ldnet cut-lms``), and with
  :func:`retrain_config` a training config whose LM shapes fit the copy, so a
  tagger trained from scratch on it sees the same LM features as a pruned
  pipeline with that selection.

Both delete layers with :meth:`spacy_ldnet.lm.model.DenseLSTMEncoder.prune`:
the kept layers' input weights lose the columns that read deleted layers,
which equals running the full LMs with the deleted layers' z at 0.
"""
from pathlib import Path
from typing import List, Tuple

from spacy.language import Language
from thinc.api import Config

from ..embed.lm_modules import kept_layers
from ..lm.checkpoint import LMCheckpointError, load_lm, save_lm
from .layers import DIRECTIONS, Selection, check_out_dir
from .locate import (
    LM_ARCHITECTURES,
    PruneError,
    embedder_config,
    find_lm_embedder_config,
    find_lm_pipe,
    lm_holder,
    set_mask_learning,
)


def prune_in_place(nlp: Language) -> Selection:
    """Delete every LM layer whose mask is 0 and describe the smaller LMs in the config.

    Returns the kept layers (indices of the unpruned LMs, ascending).

    Raises:
        PruneError: the pipeline has no LM embedder.
    """
    name, pipe = find_lm_pipe(nlp)
    holder = lm_holder(pipe)
    lm = holder.lm
    keep = {"forward": kept_layers(lm.forward_masks), "backward": kept_layers(lm.backward_masks)}
    holder.lm = lm.prune_layers(keep["forward"], keep["backward"])
    block = embedder_config(nlp, name)
    block["forward_layers"] = len(keep["forward"])
    block["backward_layers"] = len(keep["backward"])
    block["learn_layer_masks"] = False
    set_mask_learning(pipe, False)
    return keep


def retrain_config(config_path: Path, lm_dir: Path, selection: Selection) -> Tuple[Config, List[str]]:
    """The training config at ``config_path`` with ``paths.lm = lm_dir`` and, in
    every component's LM embedder block, ``forward_layers`` / ``backward_layers``
    set to the number of kept layers. Returns the config and the names of the
    components changed.

    Raises:
        PruneError: the file is missing or not a config, or no component has an LM embedder.
    """
    from spacy.util import load_config

    try:
        config = load_config(config_path, interpolate=False)
    except (OSError, ValueError) as e:
        raise PruneError(f"--config {config_path} could not be read as a spaCy config ({e}). Fix: pass a training config such as configs/conll03_ldnet.cfg.")
    found = []
    for name, component in config.get("components", {}).items():
        block = find_lm_embedder_config(component)
        if block is not None:
            block["forward_layers"] = len(selection["forward"])
            block["backward_layers"] = len(selection["backward"])
            found.append(name)
    if not found:
        raise PruneError(
            f"--config {config_path} has no component with an LM embedder ({', '.join(LM_ARCHITECTURES)}). "
            f"Fix: pass an LD-Net config such as configs/conll03_ldnet.cfg."
        )
    config.setdefault("paths", {})["lm"] = str(lm_dir)
    return config, found


def cut_lm_pair(lm_dir: Path, out_dir: Path, selection: Selection, *, log=print) -> None:
    """Write ``out_dir/{forward,backward}``: the LM checkpoints of ``lm_dir`` with
    only the ``selection`` layers (exact, see the module docstring). The copies'
    ``extra`` records ``pruned_from`` and ``kept_layers``. Nothing is written
    unless both directions load and both selections are valid.

    Raises:
        PruneError: ``out_dir`` is ``lm_dir``; a checkpoint is missing or
            unreadable; a layer index is out of range, repeated or not ascending.
    """
    check_out_dir(lm_dir, out_dir)
    pruned = {}
    for direction in DIRECTIONS:
        try:
            lm, vocab, extra = load_lm(Path(lm_dir) / direction)
        except LMCheckpointError as e:
            raise PruneError(f"LM_DIR {lm_dir}: {e}")
        keep = selection[direction]
        try:
            small = lm.prune(keep)
        except ValueError as e:
            raise PruneError(f"--{direction} {','.join(map(str, keep)) or 'none'}: {e}. Fix: give ascending indices below {lm.config.num_layers}.")
        pruned[direction] = (small, vocab, {**extra, "pruned_from": str(Path(lm_dir) / direction), "kept_layers": keep})
        log(f"{direction}: keeping layers {keep} of {lm.config.num_layers}")
    for direction, (small, vocab, extra) in pruned.items():
        save_lm(small, vocab, Path(out_dir) / direction, extra=extra)
        log(f"wrote {Path(out_dir) / direction}")


def write_retrain_config(config: Config, path: Path) -> None:
    """Write ``config`` (from :func:`retrain_config`) to ``path`` uninterpolated."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    config.to_disk(path, interpolate=False)
