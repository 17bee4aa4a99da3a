"""Finding what layer selection works on: the component with LM features, its
torch module and config block, and the dev score it is selected on."""
from typing import Any, Dict, Optional, Sequence, Tuple

import torch
from spacy.language import Language
from spacy.training import Example

from ..embed.lm_embedder import find_lm_embedder, get_lm_module
from ..embed.lm_modules import LMFeatures
from ..thinc_utils import torch_module
from . import PruneError

LM_ARCHITECTURE = "spacy_ldnet.LMEmbedder.v3"
#: Every version of the LM embedder whose config block pruning rewrites.
LM_ARCHITECTURES = ("spacy_ldnet.LMEmbedder.v1", "spacy_ldnet.LMEmbedder.v2", "spacy_ldnet.LMEmbedder.v3")


def find_lm_pipe(nlp: Language) -> Tuple[str, Any]:
    """Name and object of the (first) component whose model has an LM embedder.

    Raises:
        PruneError: no component has LM features.
    """
    for name, pipe in nlp.pipeline:
        model = getattr(pipe, "model", None)
        if model is not None and find_lm_embedder(model) is not None:
            return name, pipe
    raise PruneError(
        f"No component of this pipeline ({nlp.pipe_names}) uses {LM_ARCHITECTURE}, so there are no LM "
        f"layers to select. Fix: train a pipeline whose ldnet_ner embedder is {LM_ARCHITECTURE} "
        f"(e.g. configs/conll03_ldnet.cfg)."
    )


def lm_module(pipe) -> LMFeatures:
    """The torch :class:`LMFeatures` of a component (its masks, LMs and W)."""
    return get_lm_module(pipe.model)


def set_mask_learning(pipe, learn: bool) -> None:
    """Let the layer masks z of ``pipe`` receive gradients (True) or keep them fixed (False)."""
    node = find_lm_embedder(pipe.model)
    if node is None:
        raise PruneError("The component has no ldnet_lm_embedder layer.")
    lm_module(pipe).set_learn_masks(bool(learn))


def lm_holder(pipe) -> torch.nn.Module:
    """The torch module whose ``lm`` attribute is the component's :class:`LMFeatures`
    (replaced by the pruned copy when layers are deleted).

    Raises:
        PruneError: the component has no LM embedder.
    """
    node = find_lm_embedder(pipe.model)
    for layer in node.walk() if node is not None else ():
        if layer.shims and isinstance(getattr(torch_module(layer), "lm", None), LMFeatures):
            return torch_module(layer)
    raise PruneError("The component has no ldnet_lm_embedder layer holding LM features.")


def find_lm_embedder_config(block: Any) -> Optional[Dict[str, Any]]:
    """The first (mutable) block of ``block``, a config dict at any depth, whose
    ``@architectures`` is one of :data:`LM_ARCHITECTURES`; None if there is none."""
    if isinstance(block, dict):
        if block.get("@architectures") in LM_ARCHITECTURES:
            return block
        for value in block.values():
            found = find_lm_embedder_config(value)
            if found is not None:
                return found
    return None


def embedder_config(nlp: Language, name: str) -> Dict[str, Any]:
    """The (mutable) config block of the LM embedder inside component ``name``'s config.

    Raises:
        PruneError: the component's config has no LM embedder block.
    """
    found = find_lm_embedder_config(nlp.get_pipe_config(name))
    if found is None:
        raise PruneError(f"The config of component {name!r} has no {LM_ARCHITECTURE} block.")
    return found


def score_key(nlp: Language) -> str:
    """The F1 score the pipeline is selected on: the highest-weighted ``*_f`` score weight
    of ``[training.score_weights]`` (``ents_f`` when there is none)."""
    weights = {k: v for k, v in (nlp.config["training"].get("score_weights") or {}).items() if v}
    f_keys = sorted((k for k in weights if k.endswith("_f")), key=lambda k: -weights[k])
    return f_keys[0] if f_keys else "ents_f"


def f1_score(nlp: Language, examples: Sequence[Example], key: str) -> float:
    """``nlp.evaluate(examples)[key]`` (0-1).

    Raises:
        PruneError: the examples give no such score (no annotation of that kind).
    """
    score = nlp.evaluate(list(examples)).get(key)
    if score is None:
        raise PruneError(
            f"The evaluation data gives no {key} score (no gold or predicted annotation of that kind). "
            f"Fix: pass data annotated for the pipeline's task."
        )
    return float(score)
