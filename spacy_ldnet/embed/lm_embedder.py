"""``spacy_ldnet.LMEmbedder.v1``: LD-Net's full token features.

Per token (LD-Net, Liu et al. EMNLP 2018, section 4.1): [fine-tuned GloVe word
embedding; character BiLSTM feature; r_t], where r_t = ReLU(W dropout([h_t;
h_t^r]) + b) reads the full dense outputs [x_t; h_1,t; ...; h_L,t] of a frozen
forward and a frozen backward LM (:mod:`spacy_ldnet.lm`), each run over the
sequence with the boundary token ``<s>`` the LMs were trained with. Per-layer
masks z scale every LM layer (section 3.3); see
:class:`spacy_ldnet.embed.lm_modules.LMFeatures`. Like
``spacy_ldnet.CharWordEmbedder.v1``, the layer reads the batch's
:class:`spacy_ldnet.sequences.Sequences` and returns (S, T, nO).

Where the LM weights come from: at ``initialize``, from the shipped default
(``spacy_ldnet/lm/default/{forward,backward}``) or from the directory given as
``lm_path`` in ``[initialize.components.ldnet_ner]``. They are then part of the
model's weights and its ``attrs`` (the LM vocabularies), so a saved or packaged
pipeline needs no other file. The LM shapes (vocabulary size, widths, number of
layers per direction) are architecture arguments, so ``spacy.load`` rebuilds a
pruned pipeline from its ``config.cfg``.

Words outside the LMs' vocabulary (``spacy_ldnet.LMEmbedder.v3``,
``lm_oov_vectors``): the shipped LMs read frozen GloVe input embeddings (the
ELMo-C setting, Li et al. TACL 2019, section 3), so they can read any word of
the GloVe table, not only the 30,000 words they were trained to predict. With
``lm_oov_vectors`` a word outside the LM vocabulary reads its row of the
pipeline's vectors table (``nlp.vocab.vectors``, GloVe in the shipped configs)
instead of ``<unk>``; only words outside the table stay ``<unk>``. No weights
are added: the rows come from the vectors table the word features already use.
"""
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

import numpy
import torch
from spacy.attrs import LOWER, ORTH
from spacy.strings import get_string_id
from spacy.util import registry
from thinc.api import ArgsKwargs, Model, get_array_module, xp2torch
from thinc.types import Floats3d

from ..sequences import Sequences
from ..thinc_utils import convert_padded_outputs, to_host, torch_module, wrap_torch
from .embedder import char_word_parts, char_word_torch_args, char_word_torch_kwargs, embed_forward, fill_word_table
from .featurize import check_scales, find_rows, table_rows, token_arrays, token_positions
from .lm_modules import LDNetEmbedder, LMFeatures, encoder_config

DIRECTIONS = ("forward", "backward")
_CASED_LMS = (
    "lm_oov_vectors needs LMs trained on lower-cased text (the vectors table is read lower-cased), "
    "but these LMs are cased. Fix: set lm_oov_vectors = false in [components.ldnet_ner.model.tok2vec]."
)


def default_lm_path() -> Path:
    """The shipped LMs: a directory with ``forward/`` and ``backward/`` checkpoints."""
    return Path(__file__).resolve().parent.parent / "lm" / "default"


@registry.architectures("spacy_ldnet.LMEmbedder.v1")
def build_lm_embedder(
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
    lm_vocab_size: int = 30000,
    lm_embed_width: int = 50,
    lm_hidden_width: int = 128,
    forward_layers: int = 10,
    backward_layers: int = 10,
    lm_output_width: int = 100,
    lm_dropout: float = 0.5,
    learn_layer_masks: bool = False,
    cache_lm_tokens: int = 0,
    max_sequence_length: Optional[int] = None,
    lm_oov_vectors: bool = False,
) -> Model[Sequences, Floats3d]:
    """Build the LD-Net embedder (also registered as ``.v2``, the same builder,
    and as ``.v3``, where ``lm_oov_vectors`` defaults to True).

    Args:
        n_word_rows ... load_glove_if_empty, max_sequence_length: the character
            and word features, as ``spacy_ldnet.CharWordEmbedder.v1``.
        lm_vocab_size: rows of each LM's input vocabulary (both LMs).
        lm_embed_width: LM input-embedding width (x_t).
        lm_hidden_width: width of every LM layer.
        forward_layers / backward_layers: layers of each LM (fewer after pruning).
        lm_output_width: width of r_t (LD-Net: 100).
        lm_dropout: dropout on [h_t; h_t^r] before W.
        learn_layer_masks: build with the layer masks z learning (layer
            selection, section 3.3; ``spacy-ldnet prune`` switches it on and
            off with :meth:`LMFeatures.set_learn_masks`). While the masks are
            fixed the LMs run without gradients.
        cache_lm_tokens: training-time cache of the frozen LMs' outputs, in
            tokens (0 = off; 4 * (D_f + D_b) bytes per token, about 10.6 kB
            for two 10 x 128 LMs). Exact; later epochs then skip the LMs. Not
            used while the masks learn or when predicting.
        lm_oov_vectors: words outside the LM vocabulary read their row of the
            pipeline's vectors table as LM input instead of ``<unk>`` (module
            docstring). Needs LMs with lower-cased frozen input embeddings
            equal to that table's rows (the shipped LMs and GloVe 6B 50d).

    Input: the batch's :class:`Sequences`. Output: (S, T, word_width +
    char_output_width + case_width + lm_output_width) float32, zero-padded.

    Raises (at initialize): ValueError for an empty or mis-sized vectors
    table (see CharWordEmbedder.v1); LMCheckpointError for a missing or corrupt
    LM checkpoint; ValueError when a checkpoint's shapes or direction disagree
    with these arguments (the message names the setting to change), or, with
    ``lm_oov_vectors``, when the LMs' input embeddings are not the rows of
    the vectors table or the LMs are cased. When
    built: ValueError as CharWordEmbedder.v1.
    """
    char_word, attrs = char_word_parts(locals())
    shapes = dict(vocab_size=lm_vocab_size, embed_dim=lm_embed_width, hidden_dim=lm_hidden_width)
    lm = LMFeatures(
        encoder_config(num_layers=forward_layers, direction="forward", **shapes),
        encoder_config(num_layers=backward_layers, direction="backward", **shapes),
        lm_output_width,
        lm_dropout,
        cache_lm_tokens,
    )
    lm.set_learn_masks(learn_layer_masks)
    wrapped = wrap_torch(LDNetEmbedder(char_word, lm), convert_inputs=_convert_inputs, convert_outputs=convert_padded_outputs)
    # lm_path is set by initialize; the LM vocabularies are filled from the checkpoints and saved with the model.
    attrs.update(lm_path=None, lm_vocab_forward=[], lm_vocab_backward=[], lm_lowercase=True, lm_bos="<s>", lm_unk="<unk>")
    attrs.update(lm_oov_vectors=bool(lm_oov_vectors))
    return Model(
        "ldnet_lm_embedder",
        _forward,
        init=_init,
        layers=[wrapped],
        dims={"nO": char_word.output_dim + lm_output_width},
        attrs=attrs,
    )


registry.architectures.register("spacy_ldnet.LMEmbedder.v2", func=build_lm_embedder)


@registry.architectures("spacy_ldnet.LMEmbedder.v3")
def build_lm_embedder_v3(
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
    lm_vocab_size: int = 30000,
    lm_embed_width: int = 50,
    lm_hidden_width: int = 128,
    forward_layers: int = 10,
    backward_layers: int = 10,
    lm_output_width: int = 100,
    lm_dropout: float = 0.5,
    learn_layer_masks: bool = False,
    cache_lm_tokens: int = 0,
    max_sequence_length: Optional[int] = None,
    lm_oov_vectors: bool = True,
) -> Model[Sequences, Floats3d]:
    """``LMEmbedder.v1`` with ``lm_oov_vectors`` on by default: words outside
    the LM vocabulary read their row of the vectors table. Arguments, output
    and errors as v1."""
    return build_lm_embedder(**locals())


def find_lm_embedder(model: Model) -> Optional[Model]:
    """The ``spacy_ldnet.LMEmbedder`` layer inside ``model`` (or ``model`` itself), or None."""
    for node in model.walk():
        if node.name == "ldnet_lm_embedder":
            return node
    return None


def get_lm_module(model: Model) -> LMFeatures:
    """The torch :class:`LMFeatures` inside an ``LMEmbedder.v1`` layer (or a model containing one).

    Raises: ValueError if there is none.
    """
    node = find_lm_embedder(model)
    if node is None:
        raise ValueError("This model has no spacy_ldnet.LMEmbedder.v1 layer (no LM features).")
    return torch_module(node.layers[0]).lm


def _init(model: Model, X: Optional[Sequences] = None, Y=None) -> None:
    """Fill the word table (as CharWordEmbedder.v1) and load the LM checkpoints."""
    fill_word_table(model, X, torch_module(model.layers[0]).char_word)
    load_lms_into(model, Path(model.attrs["lm_path"]) if model.attrs["lm_path"] else default_lm_path())
    if model.attrs.get("lm_oov_vectors", False) and X is not None and X.docs:
        check_oov_vectors(model, X.docs[0].vocab.vectors)


#: Words compared by :func:`check_oov_vectors`, and the least median cosine it accepts.
OOV_CHECK_WORDS = 2000
OOV_CHECK_MIN_COSINE = 0.95


def check_oov_vectors(model: Model, vectors) -> None:
    """Check that the vectors table holds the LMs' input embeddings, so that
    ``lm_oov_vectors`` feeds the LMs rows from the space they were trained on:
    the median cosine between the LM input row and the table row of up to
    :data:`OOV_CHECK_WORDS` LM words (most frequent first) must be at least
    :data:`OOV_CHECK_MIN_COSINE` (an int8 table stays above 0.99).

    Raises: ValueError for cased LMs, a table of another width, or rows that
    are not the LMs' input embeddings; the message names the fix."""
    if not model.attrs["lm_lowercase"]:
        raise ValueError(_CASED_LMS)
    lm = get_lm_module(model)
    fix = (
        "Fix: load the vectors the LMs were trained with (GloVe 6B 50d for the shipped LMs: "
        "[initialize.before_init] @callbacks = \"spacy_ldnet.glove_vectors.v1\"), or set "
        "lm_oov_vectors = false in [components.ldnet_ner.model.tok2vec]."
    )
    if vectors.shape[1] != lm.forward_lm.embed_dim:
        raise ValueError(
            f"lm_oov_vectors reads LM inputs from nlp.vocab.vectors, whose width {vectors.shape[1]} is not the "
            f"LMs' input width {lm.forward_lm.embed_dim}. {fix}"
        )
    for direction, encoder in zip(DIRECTIONS, (lm.forward_lm, lm.backward_lm)):
        words = model.attrs[f"lm_vocab_{direction}"][:OOV_CHECK_WORDS]
        rows = find_rows(vectors, [get_string_id(w) for w in words])  # (n,)
        found = numpy.flatnonzero(rows >= 0)  # (m,) LM words with a table row
        if len(found) == 0:
            raise ValueError(f"lm_oov_vectors: no word of the {direction} LM's vocabulary is in nlp.vocab.vectors. {fix}")
        table = torch.from_numpy(table_rows(to_host(vectors.data), rows[found], model.attrs.get("word_row_scales")))
        lm_rows = encoder.embedding.weight.detach().cpu()[torch.from_numpy(found)].float()  # (m, E)
        cosine = float(torch.nn.functional.cosine_similarity(table, lm_rows, dim=1).median())
        if cosine < OOV_CHECK_MIN_COSINE:
            raise ValueError(
                f"lm_oov_vectors: nlp.vocab.vectors is not the {direction} LM's input embedding table (median "
                f"cosine {cosine:.2f} over {len(found)} shared words, at least {OOV_CHECK_MIN_COSINE} expected). {fix}"
            )


def load_lms_into(model: Model, path: Path) -> None:
    """Copy the encoders of ``path/forward`` and ``path/backward`` into an ``LMEmbedder.v1`` layer.

    Raises:
        LMCheckpointError: a checkpoint is missing or corrupt.
        ValueError: its shapes, direction or vocabulary disagree with the architecture.
    """
    from ..lm.checkpoint import load_lm

    lm = get_lm_module(model)
    for direction in DIRECTIONS:
        folder = Path(path) / direction
        ckpt, vocab, extra = load_lm(folder)
        encoder = lm.forward_lm if direction == "forward" else lm.backward_lm
        cfg = ckpt.config
        want = {
            "vocab_size": ("lm_vocab_size", encoder.config.vocab_size),
            "embed_dim": ("lm_embed_width", encoder.config.embed_dim),
            "hidden_dim": ("lm_hidden_width", encoder.config.hidden_dim),
            "num_layers": (f"{direction}_layers", encoder.num_layers),
        }
        for field, (setting, value) in want.items():
            if getattr(cfg, field) != value:
                raise ValueError(
                    f"The {direction} LM in {folder} has {field} = {getattr(cfg, field)}, but the "
                    f"embedder's {setting} is {value}. Fix: set {setting} = {getattr(cfg, field)} in "
                    f"[components.ldnet_ner.model.tok2vec], or point lm_path at matching LMs."
                )
        if cfg.direction != direction:
            raise ValueError(
                f"{folder} holds a {cfg.direction} LM where a {direction} LM was expected. Fix: put the "
                f"forward LM in {Path(path) / 'forward'} and the backward LM in {Path(path) / 'backward'}."
            )
        with torch.no_grad():
            encoder.load_state_dict(ckpt.encoder.state_dict())
        for p in encoder.parameters():
            p.requires_grad_(False)
        model.attrs[f"lm_vocab_{direction}"] = list(vocab)
        model.attrs["lm_lowercase"] = bool(extra.get("lowercase", True))
        model.attrs["lm_bos"] = str(extra.get("bos", "<s>"))
        model.attrs["lm_unk"] = str(extra.get("unk", "<unk>"))
        if model.attrs["lm_bos"] not in vocab:
            raise ValueError(f"The LM vocabulary in {folder} lacks its boundary token {model.attrs['lm_bos']!r}.")


_INDEX_CACHE: Dict[int, Tuple[list, numpy.ndarray, numpy.ndarray]] = {}


def _lm_index(model: Model, direction: str) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """One direction's vocabulary as ``(keys, ids)``: (V,) uint64 string hashes
    in ascending order and the LM id of each (the last one for a string listed
    twice), for a ``searchsorted`` lookup; cached per vocabulary list."""
    vocab = model.attrs[f"lm_vocab_{direction}"]
    key = id(model) * 2 + (direction == "backward")
    cached = _INDEX_CACHE.get(key)
    if cached is None or cached[0] is not vocab:
        index = {get_string_id(tok): i for i, tok in enumerate(vocab)}
        keys = numpy.fromiter(index.keys(), dtype="uint64", count=len(index))  # (V,)
        order = numpy.argsort(keys)
        cached = (vocab, keys[order], numpy.fromiter(index.values(), dtype="int64", count=len(index))[order])
        _INDEX_CACHE[key] = cached
    return cached[1], cached[2]


def _lookup(index: Tuple[numpy.ndarray, numpy.ndarray], keys: numpy.ndarray) -> numpy.ndarray:
    """LM ids of (N,) uint64 ``keys`` in an :func:`_lm_index`, -1 where absent: (N,) int64."""
    sorted_keys, ids = index
    if not len(sorted_keys):
        return numpy.full(len(keys), -1, dtype="int64")
    at = numpy.minimum(numpy.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)  # (N,)
    return numpy.where(sorted_keys[at] == keys, ids[at], -1)


def lm_token_ids(
    model: Model, seqs: Sequences, word_rows: Optional[numpy.ndarray] = None
) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """LM input ids, ``(S, T+1)`` int64 each: forward ``<s> w_1..w_n``, backward ``w_1..w_n <s>``.

    Words outside an LM's vocabulary (V rows) get its ``<unk>`` id, or, given
    ``word_rows`` ((S, T) int64, each token's row in the vectors table, -1 if
    none: ``CharWordFeatures.word_rows``), ``V + row`` when they have a row
    (read by :func:`lm_extra_inputs`). The lookup is lower-cased when the LMs
    were trained on lower-cased text.

    Raises: ValueError if the LMs are not loaded (before ``initialize``), or
    ``word_rows`` is given for cased LMs (vectors rows are found lower-cased).
    """
    if not model.attrs["lm_vocab_forward"] or not model.attrs["lm_vocab_backward"]:
        raise ValueError(
            "The LM embedder has no LM vocabulary: it was not initialized. Fix: call nlp.initialize() "
            "or load a trained pipeline."
        )
    if word_rows is not None and not model.attrs["lm_lowercase"]:
        raise ValueError(_CASED_LMS)
    S, T = len(seqs), seqs.padded_length
    lengths = numpy.asarray(seqs.lengths, dtype="int64")  # (S,)
    seq_of, pos_of = token_positions(lengths)  # (N,), (N,)
    keys = token_arrays(seqs, [LOWER if model.attrs["lm_lowercase"] else ORTH])[:, 0]  # (N,)
    out = []
    for direction in DIRECTIONS:
        index = _lm_index(model, direction)
        V = len(model.attrs[f"lm_vocab_{direction}"])
        bos, unk = (int(i) for i in _lookup(index, numpy.asarray([get_string_id(model.attrs[k]) for k in ("lm_bos", "lm_unk")], dtype="uint64")))
        if bos < 0:
            raise ValueError(f"The {direction} LM vocabulary has no {model.attrs['lm_bos']!r} token. Fix: load LMs written by spacy-ldnet pretrain-lm.")
        unk = 1 if unk < 0 else unk
        row = _lookup(index, keys)  # (N,)
        outside = row < 0  # (N,) words outside the LM vocabulary
        if word_rows is None:
            row[outside] = unk
        else:
            table = word_rows[seq_of[outside], pos_of[outside]]  # rows of those words in the vectors table, -1 if none
            row[outside] = numpy.where(table >= 0, V + table, unk)
        ids = numpy.zeros((S, T + 1), dtype="int64")
        if direction == "forward":
            ids[:, 0] = bos
            ids[seq_of, pos_of + 1] = row
        else:
            ids[seq_of, pos_of] = row
            ids[numpy.arange(S), lengths] = bos
        out.append(ids)
    return out[0], out[1]


def lm_extra_inputs(
    model: Model, seqs: Sequences, fw_ids: numpy.ndarray, bw_ids: numpy.ndarray
) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """The LM input embeddings of the ids >= V in ``fw_ids`` and ``bw_ids``
    (:func:`lm_token_ids` with ``word_rows``), read from the docs' vectors
    table: ``(keys, vectors)``, (U,) int64 table rows in ascending order and
    their (U, E) float32 values, the ``extra_inputs`` of
    :meth:`spacy_ldnet.lm.encoder.DenseLSTMEncoder.embed`.

    Raises: ValueError for an int8 table without its row scales."""
    parts = []
    for direction, ids in zip(DIRECTIONS, (fw_ids, bw_ids)):
        V = len(model.attrs[f"lm_vocab_{direction}"])
        parts.append(ids[ids >= V] - V)
    keys = numpy.unique(numpy.concatenate(parts))  # (U,) ascending
    data = seqs.docs[0].vocab.vectors.data  # (rows, E), numpy or (with --gpu-id) cupy
    picked = to_host(data[get_array_module(data).asarray(keys)])  # (U, E): only these rows leave the device
    scales = model.attrs.get("word_row_scales")
    check_scales(data, scales)
    return keys, table_rows(picked, numpy.arange(len(keys)), None if scales is None else numpy.asarray(scales)[keys])


def _forward(model: Model, seqs: Sequences, is_train: bool) -> Tuple[Floats3d, Callable]:
    return embed_forward(model, seqs, is_train, lambda feats: _lm_inputs(model, seqs, feats))


def _lm_inputs(model: Model, seqs: Sequences, feats) -> tuple:
    """``(feats, forward ids, backward ids, extra inputs or None)`` of a batch."""
    if not model.attrs.get("lm_oov_vectors", False):
        return (feats, *lm_token_ids(model, seqs), None)
    fw_ids, bw_ids = lm_token_ids(model, seqs, feats.word_rows)
    return feats, fw_ids, bw_ids, lm_extra_inputs(model, seqs, fw_ids, bw_ids)


def _convert_inputs(model: Model, inputs, is_train: bool):
    feats, fw_ids, bw_ids, extra = inputs
    device = model.shims[0].device
    args = (
        xp2torch(fw_ids, device=device),
        xp2torch(bw_ids, device=device),
        torch.from_numpy(feats.lengths),
    ) + char_word_torch_args(feats, device)
    kwargs = char_word_torch_kwargs(feats, torch_module(model).char_word, device)
    if extra is not None:
        kwargs["lm_extra_inputs"] = tuple(xp2torch(x, device=device) for x in extra)
    return ArgsKwargs(args=args, kwargs=kwargs), lambda d: inputs
