"""``spacy_ldnet.BiLSTMCRFTagger.v1`` / ``.v2``: the model of the ``ldnet_ner`` component
(v2 adds locked, "variational", dropout; see :func:`build_bilstm_crf_tagger_v2`).

``List[Doc] -> List[Floats2d]``: the embedding sublayer (any tok2vec-style
layer: :func:`spacy_ldnet.embed.embedder.build_char_word_embedder`,
``spacy.Tok2VecListener.v1``, ``spacy-transformers.TransformerListener.v1``)
gives token features; a word BiLSTM gives emission scores, one
(n_tokens, n_tags) array per doc. The CRF's transition scores live in the same
torch module (``head.crf``) and are trained by the component's loss.

The torch head is built once the tag inventory is known (``initialize``, or
``from_disk``/``from_bytes`` from the component's ``cfg`` before the weights),
so every torch shape comes from the config or the restored ``cfg``.
"""
from typing import Callable, List, Optional, Sequence, Tuple

import numpy
import torch
from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import ArgsKwargs, Model, torch2xp, xp2torch
from thinc.types import Floats2d, Floats3d

from ..thinc_utils import convert_padded_outputs, wrap_torch

from ..embed.featurize import Segments
from .modules import BiLSTMCRFHead


@registry.architectures("spacy_ldnet.BiLSTMCRFTagger.v1")
def build_bilstm_crf_tagger(
    tok2vec: Model[List[Doc], List[Floats2d]],
    *,
    hidden_width: int = 200,
    num_layers: int = 1,
    dropout: float = 0.5,
    max_sequence_length: int = 256,
    mixed_precision: bool = False,
) -> Model[List[Doc], List[Floats2d]]:
    """Build the tagger: ``tok2vec`` -> word BiLSTM -> emission scores.

    Args:
        tok2vec: the embedding sublayer, ``List[Doc] -> List[Floats2d]``.
        hidden_width: word LSTM width per direction.
        num_layers: stacked BiLSTM layers.
        dropout: dropout on the BiLSTM input and output.
        max_sequence_length: longest token sequence read at once (see
            :func:`spacy_ldnet.sequences.sequence_spans`).
        mixed_precision: autocast on GPU (must stay False on CPU).

    Output: emission scores, one (n_tokens, n_tags) float32 array per doc.
    """
    return build_bilstm_crf_tagger_v2(
        tok2vec,
        hidden_width=hidden_width,
        num_layers=num_layers,
        dropout=dropout,
        locked_dropout=False,
        max_sequence_length=max_sequence_length,
        mixed_precision=mixed_precision,
    )


@registry.architectures("spacy_ldnet.BiLSTMCRFTagger.v2")
def build_bilstm_crf_tagger_v2(
    tok2vec: Model[List[Doc], List[Floats2d]],
    *,
    hidden_width: int = 200,
    num_layers: int = 1,
    dropout: float = 0.5,
    locked_dropout: bool = True,
    max_sequence_length: int = 256,
    mixed_precision: bool = False,
) -> Model[List[Doc], List[Floats2d]]:
    """``BiLSTMCRFTagger.v1`` plus ``locked_dropout``: with it (the default), the
    dropout on the word BiLSTM's input and output draws one mask per sequence
    and feature, shared by all the sequence's tokens (variational dropout, Gal &
    Ghahramani 2016; recommended for BiLSTM-CRF taggers by Reimers & Gurevych
    2017, section 7.3). v1 draws one mask per token. Other arguments and the
    output are as in v1. Prediction is identical (dropout is off)."""
    return Model(
        "ldnet_bilstm_crf_tagger",
        _forward,
        init=_init,
        layers=[tok2vec],
        refs={"tok2vec": tok2vec},
        dims={"nI": None, "nO": None},
        attrs={
            "hidden_width": hidden_width,
            "num_layers": num_layers,
            "dropout": dropout,
            "max_sequence_length": max_sequence_length,
            "mixed_precision": mixed_precision,
            "locked_dropout": locked_dropout,
        },
    )


def has_head(model: Model) -> bool:
    return model.has_ref("head")


def get_head(model: Model) -> BiLSTMCRFHead:
    """The torch head (BiLSTM + emission + CRF).

    Raises: ValueError if the tag inventory is not set yet.
    """
    if not model.has_ref("head"):
        raise ValueError(
            "The ldnet_ner model has no output layer yet: its labels are unknown. "
            "Fix: call nlp.initialize() (with training examples or labels) before using the component."
        )
    return model.get_ref("head").shims[0]._model


def build_head(model: Model, input_width: int, constraint_mask: numpy.ndarray) -> None:
    """Create the torch head for ``K = constraint_mask.shape[0] - 2`` tags.

    Called from ``initialize`` and, with shapes from the component's ``cfg``,
    before loading weights. Replaces an existing head.
    """
    num_tags = constraint_mask.shape[0] - 2
    module = BiLSTMCRFHead(
        input_width,
        model.attrs["hidden_width"],
        num_tags,
        constraint_mask,
        dropout=model.attrs["dropout"],
        num_layers=model.attrs["num_layers"],
        locked_dropout=model.attrs.get("locked_dropout", False),
    )
    wrapped = wrap_torch(
        module,
        convert_inputs=_convert_inputs,
        convert_outputs=convert_padded_outputs,
        mixed_precision=model.attrs["mixed_precision"],
    )
    if model.has_ref("head"):
        old = model.get_ref("head")
        model.layers[:] = [layer for layer in model.layers if layer is not old]
    model.layers.append(wrapped)
    model.set_ref("head", wrapped)
    model.set_dim("nI", input_width, force=True)
    model.set_dim("nO", num_tags, force=True)


def _init(model: Model, X: Optional[List[Doc]] = None, Y=None) -> None:
    # The tok2vec is initialised here; the head is built by the component,
    # which knows the labels (it needs the input width, read from a sample).
    tok2vec = model.get_ref("tok2vec")
    if X is not None:
        tok2vec.initialize(X=X)
    else:
        tok2vec.initialize()


def _forward(model: Model, docs: List[Doc], is_train: bool) -> Tuple[List[Floats2d], Callable]:
    get_head(model)  # raises a clear error before initialize
    head = model.get_ref("head")
    n_tags = model.get_dim("nO")
    X, bp_X = model.get_ref("tok2vec")(docs, is_train)
    segments = Segments.from_docs(docs, model.attrs["max_sequence_length"])
    if not segments.spans:
        return [model.ops.alloc2f(0, n_tags) for _ in docs], lambda dY: bp_X([model.ops.alloc2f(0, x.shape[1]) for x in X])
    lengths = segments.lengths.tolist()
    Xpad = model.ops.pad(segments.split(X))  # (S, T, nI)
    E3d, bp_E = head((Xpad, segments.lengths), is_train)  # (S, T, n_tags)
    Y = segments.join(model.ops.unpad(E3d, lengths), len(docs), n_tags, model.ops)

    def backprop(dY: List[Floats2d]) -> List[Floats2d]:
        dXpad = bp_E(model.ops.pad(segments.split(dY)))  # (S, T, nI)
        dX_seqs = model.ops.unpad(dXpad, lengths)
        dX = segments.join(dX_seqs, len(docs), X[0].shape[1], model.ops)
        return bp_X(dX)

    return Y, backprop


def _convert_inputs(model: Model, inputs, is_train: bool):
    Xpad, lengths = inputs
    Xtorch = xp2torch(Xpad, requires_grad=is_train, device=model.shims[0].device)

    def convert_from_torch_backward(d_inputs: ArgsKwargs) -> Floats3d:
        return torch2xp(d_inputs.args[0])

    return ArgsKwargs(args=(Xtorch, torch.from_numpy(lengths)), kwargs={}), convert_from_torch_backward

