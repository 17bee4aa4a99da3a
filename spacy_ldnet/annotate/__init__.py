"""Annotate a corpus of any size with a spaCy pipeline (``spacy-ldnet annotate``).

Input (:mod:`.inputs`): plain text, one document per line, or JSONL with the
text in one field; a file, a directory or a glob pattern; gzip or not. It is
streamed: memory does not grow with the corpus.

Output (:mod:`.shards`, :mod:`.records`): a directory of shards of
``shard_size`` documents in input order, ``shard-000000.jsonl``, ... (each
line the input record plus ``"entities"`` and/or ``"spans"``) or
``shard-000000.spacy`` (``DocBin``), and ``manifest.json``. Each shard is
written under a temporary name and renamed when complete; a rerun skips
the shards done, so a run killed at any point and rerun with the same
arguments yields every input document exactly once.

Annotation: ``nlp.pipe`` with ``n_process`` processes (:mod:`.core`), or a
Ray Data pipeline with an actor pool (:mod:`.ray_mode`, optional extra
``ray``).

Python use::

    from spacy_ldnet.annotate import AnnotateSettings, annotate
    summary = annotate("model-best", "corpus/*.jsonl.gz", Path("annotated"), AnnotateSettings(n_process=2))
"""
from .core import AnnotateSettings, AnnotateSummary, annotate
from .inputs import AnnotateError

__all__ = ["AnnotateError", "AnnotateSettings", "AnnotateSummary", "annotate"]
