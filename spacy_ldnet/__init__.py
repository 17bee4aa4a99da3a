"""spacy-ldnet: LD-Net style contextual sequence labelling for spaCy.

Importing this package is deliberately light: it pulls in neither torch nor
spaCy. The spaCy factory (``ldnet_ner``) and the registered architectures are
found through the entry points declared in ``setup.py``, so spaCy imports the
heavy modules only when a config names them.
"""
from .about import __version__

__all__ = ["__version__"]
