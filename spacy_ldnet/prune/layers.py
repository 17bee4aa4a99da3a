"""Which LM layers to keep, as given on the command line: comma-separated
indices (``--forward 0,3``) or the ``kept_layers`` of a ``prune.json``
(``--selection``). Light: no spaCy or torch."""
import json
from pathlib import Path
from typing import Dict, List, Optional

from . import PruneError

DIRECTIONS = ("forward", "backward")

#: ``{"forward": [layer indices], "backward": [...]}``, indices of the unpruned LMs.
Selection = Dict[str, List[int]]


def parse_layers(text: str, option: str) -> List[int]:
    """Layer indices from ``"0,3,4"`` (``""`` or ``"none"``: no layer).

    Raises:
        PruneError: an item is not a non-negative integer (the message names ``option`` and ``text``).
    """
    items = [x.strip() for x in text.split(",") if x.strip()]
    if items == ["none"]:
        return []
    if not all(x.isdigit() for x in items):
        raise PruneError(f"{option} {text!r}: expected comma-separated layer indices such as 0,3,4 (or none). Fix: e.g. {option} 0,2")
    return [int(x) for x in items]


def read_selection(path: Path) -> Selection:
    """The ``kept_layers`` of a ``prune.json`` written by ``spacy-ldnet prune``.

    Raises:
        PruneError: the file is missing, not JSON, or has no list of layer
            indices per direction (the message names the file and the fix).
    """
    try:
        kept = json.loads(Path(path).read_text(encoding="utf8"))["kept_layers"]
        return {d: [int(i) for i in kept[d]] for d in DIRECTIONS}
    except FileNotFoundError:
        raise PruneError(f"--selection {path} does not exist. Fix: run spacy-ldnet prune (or `spacy project run prune`) first.")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise PruneError(
            f"--selection {path} is not a spacy-ldnet prune report with kept_layers.forward/backward lists "
            f"({type(e).__name__}: {e}). Fix: pass the prune.json that spacy-ldnet prune wrote."
        )


def selection_from_options(forward: Optional[str], backward: Optional[str], selection_file: Optional[Path]) -> Selection:
    """The layers to keep from ``--forward`` / ``--backward`` (an option left out
    keeps no layer of that LM) or from ``--selection`` (a prune.json).

    Raises:
        PruneError: both kinds or neither are given, or as :func:`parse_layers` / :func:`read_selection`.
    """
    if selection_file is not None:
        if forward is not None or backward is not None:
            raise PruneError("--selection and --forward/--backward both given. Fix: give either --selection or --forward/--backward, not both.")
        return read_selection(selection_file)
    if forward is None and backward is None:
        raise PruneError("No layers given. Fix: give --forward and/or --backward (e.g. --forward 0,2 --backward 1) or --selection prune.json.")
    return {"forward": parse_layers(forward or "", "--forward"), "backward": parse_layers(backward or "", "--backward")}


def check_out_dir(lm_dir: Path, out_dir: Path) -> None:
    """Raises PruneError if ``out_dir`` is ``lm_dir`` (the cut copy would overwrite its source)."""
    if Path(out_dir).resolve() == Path(lm_dir).resolve():
        raise PruneError(f"OUT_DIR {out_dir} is LM_DIR: the cut copy would overwrite the LMs it is cut from. Fix: pass another OUT_DIR.")
