"""Turn spaCy docs into the integer and vector inputs of the embedder modules.

Vectorised with numpy over the whole batch: characters come from one UTF-32
encode of the docs' texts, word rows from one ``Vectors.find`` call per batch.
"""
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy
from spacy.attrs import IDX, IS_DIGIT, IS_LOWER, IS_PUNCT, IS_TITLE, IS_UPPER, LENGTH, LOWER
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
    """Map the characters of ``text`` to ids in ``[1, n_chars)`` (0 is padding),
    (len(text),) int64: :func:`char_ids_of` of its code points."""
    return char_ids_of(numpy.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4").astype("int64"), n_chars)


def char_ids_of(code_points: numpy.ndarray, n_chars: int) -> numpy.ndarray:
    """Map code points (int64, any shape) to ids in ``[1, n_chars)`` (0 is padding).

    Code points below ``n_direct = n_chars - 1 - HASH_BUCKETS`` (ASCII and
    Latin-1 for the default 512) get their own id; all others (emoji, CJK,
    control characters beyond it) fall into ``HASH_BUCKETS`` shared buckets.
    """
    n_direct = n_chars - 1 - HASH_BUCKETS
    return numpy.where(code_points < n_direct, code_points + 1, n_direct + 1 + code_points % HASH_BUCKETS)


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


def token_arrays(seqs: Sequences, attrs: Sequence[int]) -> numpy.ndarray:
    """``doc.to_array(attrs)`` of every token of the batch, in sequence order:
    (N, len(attrs)) uint64, N = ``sum(seqs.lengths)``; sequence s's tokens are
    rows ``offsets[s] .. offsets[s] + lengths[s] - 1`` (see :func:`token_positions`).
    Each doc is read once."""
    per_doc = {}
    parts = []
    for i, start, end in seqs.spans:
        if i not in per_doc:
            per_doc[i] = seqs.docs[i].to_array(list(attrs)).astype("uint64").reshape(-1, len(attrs))
        parts.append(per_doc[i][start:end])
    return numpy.concatenate(parts) if parts else numpy.zeros((0, len(attrs)), dtype="uint64")


def token_positions(lengths: numpy.ndarray) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """``(sequence, position)`` of each token of a batch in sequence order:
    two (N,) int64 arrays for (S,) ``lengths``; token k is at
    ``padded[sequence[k], position[k]]``."""
    N = int(lengths.sum())
    sequence = numpy.repeat(numpy.arange(len(lengths)), lengths)  # (N,)
    position = numpy.arange(N) - numpy.repeat(numpy.cumsum(lengths) - lengths, lengths)  # (N,)
    return sequence, position


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
    is read as one character stream ``w_1 ␣ w_2 ␣ ... w_n ␣`` (LD-Net section 4.1),
    taken from the doc's text at each token's offset.

    A table stored as int8 (``spacy-ldnet trim-vectors --dtype int8``) is read
    as ``data[row] * row_scales[row]``; a float16 table as it is.

    The whole batch is handled at once: one ``to_array`` and one character
    encoding per doc, one table lookup per batch, numpy scatters into the
    padded arrays.

    Raises: ValueError for an int8 table without one scale per row.
    """
    docs = seqs.docs
    S, T = len(seqs), seqs.padded_length
    lengths = numpy.asarray(seqs.lengths, dtype="int64")  # (S,)
    seq_of, pos_of = token_positions(lengths)  # (N,), (N,)
    tokens = token_arrays(seqs, [LOWER, IDX, LENGTH])  # (N, 3)
    keys, char_start, n_chars_of = tokens[:, 0], tokens[:, 1].astype("int64"), tokens[:, 2].astype("int64")

    word_rows = numpy.full((S, T), -1, dtype="int64")
    frozen = numpy.zeros((S, T, word_dim), dtype="float32")
    vectors = docs[0].vocab.vectors if len(docs) else None
    if vectors is not None and vectors.shape[0] > 0 and vectors.shape[1] == word_dim and len(keys):
        rows = find_rows(vectors, keys)  # (N,)
        word_rows[seq_of, pos_of] = rows
        beyond = rows >= n_word_rows  # (N,) rows read from the frozen part of the table
        if beyond.any():
            frozen[seq_of[beyond], pos_of[beyond]] = table_rows(to_host(vectors.data), rows[beyond], row_scales)

    case_ids = numpy.zeros((S, T), dtype="int64")
    if with_case and len(keys):
        cases = {}
        parts = []
        for i, start, end in seqs.spans:
            if i not in cases:
                cases[i] = case_ids_for(docs[i])
            parts.append(cases[i][start:end])
        case_ids[seq_of, pos_of] = numpy.concatenate(parts)

    # Character streams: token k contributes its n_chars_of[k] characters and one space.
    width = n_chars_of + 1  # (N,)
    char_lengths = numpy.bincount(seq_of, width, S).astype("int64")  # (S,) stream lengths
    flat_start = numpy.cumsum(width) - width  # (N,) token k's first character in the batch's joined streams
    first_char = flat_start - (numpy.cumsum(char_lengths) - char_lengths)[seq_of]  # (N,) ... in its own stream
    bw_index = numpy.zeros((S, T), dtype="int64")
    fw_index = numpy.zeros((S, T), dtype="int64")
    bw_index[seq_of, pos_of] = first_char
    fw_index[seq_of, pos_of] = first_char + n_chars_of  # the space after the word
    C = int(char_lengths.max()) if S else 0
    char_ids = numpy.zeros((S, C), dtype="int64")
    if len(keys):
        texts = {}  # doc index -> text, in first-use order
        for i, _, _ in seqs.spans:
            if i not in texts:  # Doc.text joins every token: once per doc
                texts[i] = docs[i].text
        text_start = dict(zip(texts, numpy.cumsum([0] + [len(t) for t in texts.values()])))
        code_points = numpy.frombuffer("".join(texts.values()).encode("utf-32-le", "surrogatepass"), dtype="<u4").astype("int64")
        token_text_start = numpy.repeat([text_start[i] for i, _, _ in seqs.spans], lengths) + char_start  # (N,) in code_points
        step = numpy.arange(int(width.sum())) - numpy.repeat(flat_start, width)  # (n_all,) place within the token
        is_space = step == numpy.repeat(n_chars_of, width)  # (n_all,) the space after each token
        source = numpy.where(is_space, 0, numpy.repeat(token_text_start, width) + step)  # (n_all,)
        chars = numpy.where(is_space, ord(" "), code_points[source])  # (n_all,) code points
        char_ids[numpy.repeat(seq_of, width), numpy.repeat(first_char, width) + step] = char_ids_of(chars, n_chars)
    return CharWordFeatures(word_rows, frozen, char_ids, char_lengths, fw_index, bw_index, lengths, case_ids)
