"""Turn spaCy docs into the integer and vector inputs of the embedder modules.

Vectorised with numpy: characters come from one UTF-32 encode per sequence,
word rows from one ``Vectors.find`` call per batch.
"""
from dataclasses import dataclass
from typing import List, Optional

import numpy
from spacy.attrs import IS_DIGIT, IS_LOWER, IS_PUNCT, IS_TITLE, IS_UPPER, LOWER
from spacy.tokens import Doc

from ..sequences import Sequences
from ..thinc_utils import to_host


@dataclass
class CharWordFeatures:
    """Padded inputs of :class:`spacy_ldnet.embed.modules.CharWordEmbedder`.

    S sequences, T tokens (padded), C characters (padded), as in :class:`spacy_ldnet.sequences.Sequences`.
    """

    word_rows: numpy.ndarray  # (S, T) int64, row in the vectors table, -1 if absent
    frozen_vectors: numpy.ndarray  # (S, T, word_dim) float32, table rows >= n_rows, else 0
    char_ids: numpy.ndarray  # (S, C) int64, 0 = padding
    char_lengths: numpy.ndarray  # (S,) int64
    fw_index: numpy.ndarray  # (S, T) int64, index of the space after word t
    bw_index: numpy.ndarray  # (S, T) int64, index of word t's first character
    lengths: numpy.ndarray  # (S,) int64, tokens per sequence
    case_ids: numpy.ndarray  # (S, T) int64, word shape (see case_ids_for); all 0 unless featurize(with_case=True)


#: Word shape ids of :func:`case_ids_for`.
CASE_LOWER, CASE_UPPER, CASE_TITLE, CASE_DIGIT, CASE_PUNCT, CASE_OTHER = 1, 2, 3, 4, 5, 6


def case_ids_for(doc: Doc) -> numpy.ndarray:
    """Word shape id per token, (n_tokens,) int64, in [1, 6]: lower-case,
    UPPER-CASE (one upper-case letter alone counts as Title), Title-case, all
    digits, punctuation, other (mixed case, symbols, digits with letters).
    """
    flags = doc.to_array([IS_LOWER, IS_UPPER, IS_TITLE, IS_DIGIT, IS_PUNCT]).reshape(-1, 5).astype(bool)
    ids = numpy.full(len(doc), CASE_OTHER, dtype="int64")
    ids[flags[:, 4]] = CASE_PUNCT
    ids[flags[:, 3]] = CASE_DIGIT
    ids[flags[:, 1]] = CASE_UPPER
    ids[flags[:, 2]] = CASE_TITLE
    ids[flags[:, 0]] = CASE_LOWER
    return ids


#: Code points at or above ``n_chars - 1 - HASH_BUCKETS`` share these buckets.
HASH_BUCKETS = 64


def char_ids_for(text: str, n_chars: int) -> numpy.ndarray:
    """Map characters to ids in ``[1, n_chars)`` (0 is padding).

    Code points below ``n_direct = n_chars - 1 - HASH_BUCKETS`` (ASCII and
    Latin-1 for the default 512) get their own id; all others (emoji, CJK,
    control characters beyond it) fall into ``HASH_BUCKETS`` shared buckets.
    """
    n_direct = n_chars - 1 - HASH_BUCKETS
    cps = numpy.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4").astype("int64")
    return numpy.where(cps < n_direct, cps + 1, n_direct + 1 + cps % HASH_BUCKETS)


def find_rows(vectors, keys) -> numpy.ndarray:
    """``vectors.find(keys=keys)`` as a numpy int64 array of shape (len(keys),) (-1: no row).

    With ``spacy train --gpu-id N`` the table lives on the GPU and ``find``
    returns a cupy array, which numpy refuses to convert implicitly."""
    return to_host(vectors.find(keys=keys)).astype("int64", copy=False)


def check_scales(data: numpy.ndarray, row_scales: Optional[numpy.ndarray]) -> None:
    """An int8 vectors table needs one scale per row (see :func:`featurize`)."""
    if data.dtype == numpy.int8 and (row_scales is None or len(row_scales) != data.shape[0]):
        got = "no" if row_scales is None else len(row_scales)
        raise ValueError(
            f"nlp.vocab.vectors is stored as int8 ({data.shape[0]} rows) but the embedder holds {got} row "
            f"scales. Fix: load the pipeline as spacy-ldnet trim-vectors wrote it (vectors and model together)."
        )


def table_rows(data: numpy.ndarray, rows: numpy.ndarray, row_scales: Optional[numpy.ndarray]) -> numpy.ndarray:
    """Rows ``rows`` (n,) of a vectors table's host array ``data`` as float32
    (n, width): an int8 table (``spacy-ldnet trim-vectors --dtype int8``) is
    read as ``data[row] * row_scales[row]``, any other as it is.

    Raises: ValueError for an int8 table without one scale per row."""
    check_scales(data, row_scales)
    values = data[rows]  # (n, width)
    if data.dtype == numpy.int8:
        return values.astype("float32") * row_scales[rows, None]
    return values.astype("float32", copy=False)


def featurize(
    seqs: Sequences,
    *,
    n_word_rows: int,
    word_dim: int,
    n_chars: int,
    with_case: bool = False,
    row_scales: Optional[numpy.ndarray] = None,
) -> CharWordFeatures:
    """Build the padded inputs of every sequence of a batch.

    The word lookup is lower-cased (GloVe 6B is uncased): each token's ``LOWER``
    hash is looked up in ``doc.vocab.vectors``; a table of another width than
    ``word_dim`` (or an empty one) gives every word row -1. Word-shape ids are
    computed only ``with_case`` (embedders with a case feature). Each sequence
    is read as one character stream ``w_1 ␣ w_2 ␣ ... w_n ␣`` (LD-Net section 4.1).

    A table stored as int8 (``spacy-ldnet trim-vectors --dtype int8``) is read
    as ``data[row] * row_scales[row]``; a float16 table as it is.

    Raises: ValueError for an int8 table without one scale per row.
    """
    docs = seqs.docs
    S, T = len(seqs), seqs.padded_length
    word_rows = numpy.full((S, T), -1, dtype="int64")
    frozen = numpy.zeros((S, T, word_dim), dtype="float32")
    fw_index = numpy.zeros((S, T), dtype="int64")
    bw_index = numpy.zeros((S, T), dtype="int64")
    case_ids = numpy.zeros((S, T), dtype="int64")
    case_cache = {}
    char_seqs: List[numpy.ndarray] = []
    lower_cache = {}
    vectors = docs[0].vocab.vectors if len(docs) else None
    has_vectors = vectors is not None and vectors.shape[0] > 0 and vectors.shape[1] == word_dim
    data = None
    for s, (i, start, end) in enumerate(seqs.spans):
        doc = docs[i]
        if i not in lower_cache:
            lower_cache[i] = doc.to_array([LOWER]).astype("uint64").reshape(-1)
        keys = lower_cache[i][start:end]
        if has_vectors:
            rows = find_rows(vectors, keys)
            word_rows[s, : end - start] = rows
            beyond = rows >= n_word_rows
            if beyond.any():
                if data is None:
                    data = to_host(vectors.data)
                frozen[s, : end - start][beyond] = table_rows(data, rows[beyond], row_scales)  # (n, word_dim)
        if with_case:
            if i not in case_cache:
                case_cache[i] = case_ids_for(doc)
            case_ids[s, : end - start] = case_cache[i][start:end]
        words = [t.text for t in doc[start:end]]
        wlens = numpy.fromiter((len(w) for w in words), dtype="int64", count=len(words))
        starts = numpy.concatenate([[0], numpy.cumsum(wlens + 1)[:-1]])
        bw_index[s, : end - start] = starts
        fw_index[s, : end - start] = starts + wlens  # the space after the word
        char_seqs.append(char_ids_for(" ".join(words) + " ", n_chars))
    char_lengths = numpy.asarray([len(c) for c in char_seqs], dtype="int64")
    C = int(char_lengths.max()) if S else 0
    char_ids = numpy.zeros((S, C), dtype="int64")
    for s, c in enumerate(char_seqs):
        char_ids[s, : len(c)] = c
    lengths = numpy.asarray(seqs.lengths, dtype="int64")
    return CharWordFeatures(word_rows, frozen, char_ids, char_lengths, fw_index, bw_index, lengths, case_ids)
