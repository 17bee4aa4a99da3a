"""``spacy_ldnet.BiLSTMCRFTagger.v1`` / ``.v2``: the model of the ``ldnet_ner`` component.

The data path of one batch (LD-Net, Liu et al. EMNLP 2018, section 4.1;
Lample et al. 2016, section 2), read top to bottom:

1. :func:`cut`: docs -> :class:`spacy_ldnet.sequences.Sequences`, once per batch;
2. :func:`emission_scores`: the embedding sublayer (``tok2vec``) gives token
   features (S, T, nI), the word BiLSTM and a linear layer give emission
   scores (S, T, K) over the K BILUO tags;
3. the CRF of the same torch head (``head.crf``): :func:`viterbi_paths`
   decodes (Viterbi), :func:`crf_loss` gives the negative log-likelihood of
   the gold tags (forward algorithm) and its gradient, :func:`posterior` the
   forward-backward tables behind the marginals and entity confidences
   (:mod:`spacy_ldnet.ner.confidence`).

:func:`spacy_ldnet.ner.confidence.predict_docs` runs 1-3 for ``predict``. The thinc forward pass
(``model.predict(docs)``, ``model.begin_update(docs)``) runs 1-2 and returns
the emission scores per doc, one (n_tokens, K) array each.

``tok2vec`` is one of the package's embedders (they read the ``Sequences``
batch and return (S, T, nI)) or any spaCy tok2vec-style layer, ``List[Doc] ->
List[Floats2d]`` (``spacy.Tok2VecListener.v1``,
``spacy-transformers.TransformerListener.v1``), whose per-doc output is padded
with the same batch.

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

from ..sequences import READS_SEQUENCES, Sequences
from ..thinc_utils import convert_padded_outputs, torch_module, wrap_torch
from .crf import Posterior
from .modules import BiLSTMCRFHead

#: Longest token sequence read at once when the config does not say.
DEFAULT_MAX_SEQUENCE_LENGTH = 256


@registry.architectures("spacy_ldnet.BiLSTMCRFTagger.v1")
def build_bilstm_crf_tagger(
    tok2vec: Model,
    *,
    hidden_width: int = 200,
    num_layers: int = 1,
    dropout: float = 0.5,
    locked_dropout: bool = False,
    max_sequence_length: int = DEFAULT_MAX_SEQUENCE_LENGTH,
    mixed_precision: bool = False,
) -> Model[List[Doc], List[Floats2d]]:
    """Build the tagger: ``tok2vec`` -> word BiLSTM -> emission scores, plus the CRF.

    Args:
        tok2vec: the embedding sublayer (see the module docstring).
        hidden_width: word LSTM width per direction.
        num_layers: stacked BiLSTM layers.
        dropout: dropout on the BiLSTM input and output (training only).
        locked_dropout: draw that dropout's mask once per sequence and feature,
            shared by all the sequence's tokens (variational dropout, Gal &
            Ghahramani 2016; Reimers & Gurevych 2017, section 7.3) instead of
            once per token.
        max_sequence_length: longest token sequence read at once, in tokens
            (longer unsentenced docs are cut, see
            :func:`spacy_ldnet.sequences.sequence_spans`). The one setting of
            the cut: an embedder that also gives it must give the same value.
        mixed_precision: autocast on GPU (must stay False on CPU).

    Output: emission scores, one (n_tokens, n_tags) float32 array per doc.

    Raises: ValueError if ``max_sequence_length`` < 1, or if ``tok2vec`` sets
    its own ``max_sequence_length`` to another value (the message names both
    values and the fix).
    """
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
            "max_sequence_length": _one_max_sequence_length(max_sequence_length, tok2vec),
            "mixed_precision": mixed_precision,
            "locked_dropout": locked_dropout,
        },
    )


@registry.architectures("spacy_ldnet.BiLSTMCRFTagger.v2")
def build_bilstm_crf_tagger_v2(
    tok2vec: Model,
    *,
    hidden_width: int = 200,
    num_layers: int = 1,
    dropout: float = 0.5,
    locked_dropout: bool = True,
    max_sequence_length: int = DEFAULT_MAX_SEQUENCE_LENGTH,
    mixed_precision: bool = False,
) -> Model[List[Doc], List[Floats2d]]:
    """``BiLSTMCRFTagger.v1`` with ``locked_dropout`` on by default. Arguments,
    output and errors as v1."""
    return build_bilstm_crf_tagger(**locals())


def _one_max_sequence_length(tagger_value: int, tok2vec: Model) -> int:
    """The tagger's ``max_sequence_length``, checked against the one an embedder
    may carry (configs written before it had one place give it twice)."""
    if int(tagger_value) < 1:
        raise ValueError(
            f"max_sequence_length must be >= 1, got {tagger_value}. Fix: set max_sequence_length in "
            f"[components.ldnet_ner.model] to a positive number of tokens ({DEFAULT_MAX_SEQUENCE_LENGTH} by default)."
        )
    embedder_value = tok2vec.attrs.get("max_sequence_length")
    if embedder_value is not None and int(embedder_value) != int(tagger_value):
        raise ValueError(
            f"max_sequence_length is set twice and the values disagree: {tagger_value} in the tagger "
            f"([components.ldnet_ner.model]) and {embedder_value} in its embedder "
            f"([components.ldnet_ner.model.tok2vec]). Fix: set it once, in [components.ldnet_ner.model], "
            f"and delete it from the tok2vec block."
        )
    return int(tagger_value)


def has_head(model: Model) -> bool:
    """True once the torch head (BiLSTM + emission layer + CRF) is built."""
    return model.has_ref("head")


def get_head(model: Model) -> BiLSTMCRFHead:
    """The torch head (BiLSTM + emission layer + CRF).

    Raises: ValueError if the tag inventory is not set yet.
    """
    if not model.has_ref("head"):
        raise ValueError(
            "The ldnet_ner model has no output layer yet: its labels are unknown. "
            "Fix: call nlp.initialize() (with training examples or labels) before using the component."
        )
    return torch_module(model.get_ref("head"))


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
    if X is None:
        tok2vec.initialize()
    elif tok2vec.attrs.get(READS_SEQUENCES):
        tok2vec.initialize(X=cut(model, X))
    else:
        tok2vec.initialize(X=X)


# ----------------------------------------------------------------- data path
def cut(model: Model, docs: Sequence[Doc]) -> Sequences:
    """The batch's sequences, cut at the tagger's ``max_sequence_length``."""
    return Sequences.from_docs(docs, model.attrs["max_sequence_length"])


def input_width(model: Model, docs: Sequence[Doc]) -> int:
    """nI, the width of ``tok2vec``'s features: its ``nO``, or read from its output on ``docs``."""
    tok2vec = model.get_ref("tok2vec")
    if tok2vec.has_dim("nO") and tok2vec.get_dim("nO"):
        return int(tok2vec.get_dim("nO"))
    X = tok2vec.predict(cut(model, docs) if tok2vec.attrs.get(READS_SEQUENCES) else list(docs))
    return int(X.shape[-1] if hasattr(X, "shape") else X[0].shape[1])


def token_features(model: Model, seqs: Sequences, is_train: bool) -> Tuple[Floats3d, Callable]:
    """``tok2vec``'s features of the sequences, (S, T, nI) zero-padded, and the
    backprop that takes their (S, T, nI) gradient."""
    tok2vec = model.get_ref("tok2vec")
    if tok2vec.attrs.get(READS_SEQUENCES):
        return tok2vec(seqs, is_train)
    X, bp_X = tok2vec(list(seqs.docs), is_train)  # one (n_tokens, nI) array per doc
    if not len(seqs):
        width = X[0].shape[1] if X else model.get_dim("nI")
        return model.ops.alloc3f(0, 0, width), lambda d: bp_X([model.ops.alloc2f(0, width) for _ in X])
    return seqs.pad(X, model.ops), lambda dX: bp_X(seqs.unpad(dX, model.ops))


def emission_scores(model: Model, seqs: Sequences, is_train: bool) -> Tuple[Floats3d, Callable]:
    """Emission scores of the sequences, (S, T, K) float32, zero at padded
    positions, and the backprop that takes their (S, T, K) gradient.

    Raises: ValueError before ``initialize`` (no head, see :func:`get_head`).
    """
    get_head(model)  # raises a clear error before initialize
    X, bp_X = token_features(model, seqs, is_train)  # (S, T, nI)
    if not len(seqs):
        return model.ops.alloc3f(0, 0, model.get_dim("nO")), lambda dE: bp_X(model.ops.alloc3f(*X.shape))
    lengths = numpy.asarray(seqs.lengths, dtype="int64")
    E, bp_E = model.get_ref("head")((X, lengths), is_train)  # (S, T, K)
    return E, lambda dE: bp_X(bp_E(dE))


def viterbi_paths(model: Model, E: Floats3d, seqs: Sequences) -> List[List[int]]:
    """The best allowed tag path of every sequence (Viterbi, see
    :meth:`spacy_ldnet.ner.crf.ConditionalRandomField.viterbi_decode`):
    ``lengths[s]`` tag ids for sequence s. ``E``: (S, T, K) emission scores."""
    if not len(seqs):
        return []
    head = get_head(model)
    Et, mask = emission_tensor(head, E, seqs.lengths)
    paths, _ = head.crf.viterbi_decode(Et, mask)
    return paths


def posterior(model: Model, E: Floats3d, seqs: Sequences, temperature: float = 1.0) -> Posterior:
    """Forward-backward tables of the sequences (float64, no gradient; see
    :meth:`spacy_ldnet.ner.crf.ConditionalRandomField.forward_backward`), with
    emission and transition scores divided by ``temperature``.
    ``E``: (S, T, K) emission scores, S >= 1."""
    head = get_head(model)
    Et, mask = emission_tensor(head, E, seqs.lengths)
    with torch.no_grad():
        return head.crf.forward_backward(Et.double(), mask, temperature)


def crf_loss(
    model: Model, E: Floats3d, seqs: Sequences, gold: Sequence[Optional[Sequence[int]]]
) -> Tuple[float, Floats3d]:
    """CRF negative log-likelihood of the gold tag paths and its gradient w.r.t. ``E``.

    Args:
        E: (S, T, K) emission scores of ``seqs`` (as :func:`emission_scores`).
        gold: per sequence, its ``lengths[s]`` gold tag ids, or None to leave
            the sequence out of the loss (incomplete annotation).
    Returns:
        ``(loss, dE)``: the NLL in nats, summed over the kept sequences and
        divided by their number (0.0 if none is kept), and its (S, T, K)
        gradient (0 on left-out sequences and padding). The gradient w.r.t.
        the CRF transition scores accumulates in the head's ``.grad``, applied
        by ``finish_update``.
    """
    dE = model.ops.alloc3f(*E.shape)
    keep = [k for k, tags in enumerate(gold) if tags is not None]
    if not keep:
        return 0.0, dE
    head = get_head(model)
    lengths = seqs.lengths
    Et, mask = emission_tensor(head, E[keep], [lengths[k] for k in keep], requires_grad=True)
    tags = gold_tensor([gold[k] for k in keep], mask)
    loss = head.crf.neg_log_likelihood(Et, tags, mask, reduction="sum") / len(keep)
    loss.backward()
    dE[keep] = model.ops.asarray3f(torch2xp(Et.grad.detach().float()))
    return float(loss.item()), dE


def emission_tensor(head: torch.nn.Module, E, lengths: Sequence[int], requires_grad: bool = False):
    """(S, T, K) emission scores -> ``(E, mask)`` on the head's device: a
    float tensor (a leaf requiring grad if asked) and the (S, T) bool mask,
    True on the first ``lengths[s]`` positions of row s."""
    device = next(head.parameters()).device
    Et = xp2torch(E, device=device).float().detach()  # a leaf; no copy for a float32 array on the device
    mask = numpy.arange(Et.shape[1])[None, :] < numpy.asarray(lengths)[:, None]
    return Et.requires_grad_(requires_grad), torch.from_numpy(mask).to(device)


def gold_tensor(gold: Sequence[Sequence[int]], mask: torch.Tensor) -> torch.Tensor:
    """Gold tag ids per sequence -> (S, T) long tensor on ``mask``'s device (0 at padding)."""
    tags = torch.zeros(mask.shape, dtype=torch.long, device=mask.device)
    for row, ids in enumerate(gold):
        tags[row, : len(ids)] = torch.as_tensor(list(ids), dtype=torch.long)
    return tags


# ------------------------------------------------------------- thinc forward
def _forward(model: Model, docs: List[Doc], is_train: bool) -> Tuple[List[Floats2d], Callable]:
    """Emission scores per doc: :func:`cut`, then :func:`emission_scores`, unpadded."""
    seqs = cut(model, docs)
    E, backprop = emission_scores(model, seqs, is_train)
    if not len(seqs):
        return [model.ops.alloc2f(0, E.shape[2]) for _ in docs], lambda dY: backprop(model.ops.alloc3f(*E.shape))

    def backprop_docs(dY: List[Floats2d]):
        return backprop(seqs.pad(dY, model.ops))

    return seqs.unpad(E, model.ops), backprop_docs


def _convert_inputs(model: Model, inputs, is_train: bool):
    Xpad, lengths = inputs
    Xtorch = xp2torch(Xpad, requires_grad=is_train, device=model.shims[0].device)

    def convert_from_torch_backward(d_inputs: ArgsKwargs) -> Floats3d:
        return torch2xp(d_inputs.args[0])

    return ArgsKwargs(args=(Xtorch, torch.from_numpy(lengths)), kwargs={}), convert_from_torch_backward
