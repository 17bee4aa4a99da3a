"""``spacy_ldnet.LMEmbedder.v1``/``.v2``: LD-Net's full token features as a tok2vec-style
thinc layer, ``List[Doc] -> List[Floats2d]``.

Per token (LD-Net section 4.1): [fine-tuned GloVe word embedding; character
BiLSTM feature; r_t], where r_t = ReLU(W dropout([h_t; h_t^r]) + b) reads the
full dense outputs [x_t; h_1,t; ...; h_L,t] of a frozen forward and a frozen
backward LM (:mod:`spacy_ldnet.lm`), each run over the sentence with the
boundary token ``<s>`` the LMs were trained with. Per-layer masks z scale every
LM layer (section 3.3); see :class:`spacy_ldnet.embed.lm_modules.LMFeatures`.

Where the LM weights come from: at ``initialize``, from the shipped default
(``spacy_ldnet/lm/default/{forward,backward}``) or from the directory given as
``lm_path`` in ``[initialize.components.ldnet_ner]``. They are then part of the
model's weights and its ``attrs`` (the LM vocabularies), so a saved or packaged
pipeline needs no other file. The LM shapes (vocabulary size, widths, number of
layers per direction) are architecture arguments, so ``spacy.load`` rebuilds a
pruned pipeline from its ``config.cfg``.
"""
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy
import torch
from spacy.attrs import LOWER, ORTH
from spacy.strings import get_string_id
from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import ArgsKwargs, Model, xp2torch
from thinc.types import Floats2d

from ..thinc_utils import convert_padded_outputs, to_host, wrap_torch
from .embedder import char_word_module, char_word_torch_args, char_word_torch_kwargs, embed_forward, fill_word_table
from .featurize import Segments, find_rows
from .lm_modules import LDNetEmbedder, LMFeatures, encoder_config

DIRECTIONS = ("forward", "backward")


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
    max_sequence_length: int = 256,
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
) -> Model[List[Doc], List[Floats2d]]:
    """Build the LD-Net embedder: ``LMEmbedder.v2`` without word dropout and
    without the case feature. Arguments, output and errors as v2."""
    return build_lm_embedder_v2(**locals(), word_dropout=0.0, case_width=0)


@registry.architectures("spacy_ldnet.LMEmbedder.v2")
def build_lm_embedder_v2(
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
    lm_vocab_size: int = 30000,
    lm_embed_width: int = 50,
    lm_hidden_width: int = 128,
    forward_layers: int = 10,
    backward_layers: int = 10,
    lm_output_width: int = 100,
    lm_dropout: float = 0.5,
    learn_layer_masks: bool = False,
    cache_lm_tokens: int = 0,
    word_dropout: float = 0.0,
    case_width: int = 0,
) -> Model[List[Doc], List[Floats2d]]:
    """Build the LD-Net embedder: ``LMEmbedder.v3`` with a closed LM input
    vocabulary (``lm_open_vocab = false``). Arguments, output and errors as v3."""
    return build_lm_embedder_v3(**locals(), lm_open_vocab=False)


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
    max_sequence_length: int = 256,
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
    word_dropout: float = 0.0,
    case_width: int = 0,
    lm_open_vocab: bool = False,
) -> Model[List[Doc], List[Floats2d]]:
    """Build the LD-Net embedder: character + word features and LM features.

    Args:
        n_word_rows ... load_glove_if_empty, word_dropout, case_width: as
            ``spacy_ldnet.CharWordEmbedder.v2`` (the last two new in v2).
        lm_vocab_size: rows of each LM's input vocabulary (both LMs).
        lm_embed_width: LM input-embedding width (x_t).
        lm_hidden_width: width of every LM layer.
        forward_layers / backward_layers: layers of each LM (fewer after pruning).
        lm_output_width: width of r_t (LD-Net: 100).
        lm_dropout: dropout on [h_t; h_t^r] before W.
        learn_layer_masks: let the layer masks z receive gradients (layer
            selection; ``spacy-ldnet prune`` switches it on). When False the LMs
            run without gradients.
        cache_lm_tokens: training-time cache of the frozen LMs' outputs, in
            tokens (0 = off; about 10.6 kB per token for two 10x128 LMs, so
            300000 covers CoNLL-2003's training set in 3.2 GB). Exact; later
            epochs then skip the LMs. Not used while learning the masks or
            when predicting.
        lm_open_vocab: new in v3. A word outside an LM's vocabulary that has
            a row in ``nlp.vocab.vectors`` reads that (unmodified) vector as
            the LM input x_t instead of ``<unk>``. The shipped LMs' input
            embedding is the frozen GloVe 6B 50d table (ELMo-C section 3), so
            the vector lies in the space the LSTMs were trained on; on
            CoNLL-2003 test, 31.5% of the entity tokens are outside the
            shipped LMs' 30,000 words and 27.9% of them have a GloVe vector
            (``benchmarks/lm_open_vocab.py``). Needs ``nlp.vocab.vectors`` to
            be the table the LMs were trained with; checked at initialize.
            Off by default: on CoNLL-2003 it did not raise dev F1 and test
            F1 was 0.27 lower at the best checkpoints by step 5,000 (open) and 5,500 (closed)
            (docs/ldnet.md, "Open LM input vocabulary").

    Output: one (n_tokens, word_width + char_output_width + case_width +
    lm_output_width) float32 array per doc.

    Raises (at initialize): ValueError for an empty or mis-sized vectors
    table (see CharWordEmbedder.v1); LMCheckpointError for a missing or corrupt
    LM checkpoint; ValueError when a checkpoint's shapes or direction disagree
    with these arguments (the message names the setting to change); with
    ``lm_open_vocab``, ValueError when ``nlp.vocab.vectors`` is not the LMs'
    input-embedding table (the LM words' rows differ). When built: ValueError
    if ``lm_open_vocab`` and ``lm_embed_width != word_width``.
    """
    if lm_open_vocab and lm_embed_width != word_width:
        raise ValueError(
            f"lm_open_vocab feeds rows of nlp.vocab.vectors (word_width = {word_width}) to the LMs, whose "
            f"input width is lm_embed_width = {lm_embed_width}. Fix: use LMs trained on these vectors, "
            f"or set lm_open_vocab = false."
        )
    char_word = char_word_module(
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
    shapes = dict(vocab_size=lm_vocab_size, embed_dim=lm_embed_width, hidden_dim=lm_hidden_width)
    lm = LMFeatures(
        encoder_config(num_layers=forward_layers, direction="forward", **shapes),
        encoder_config(num_layers=backward_layers, direction="backward", **shapes),
        lm_output_width,
        lm_dropout,
        cache_lm_tokens,
    )
    module = LDNetEmbedder(char_word, lm)
    wrapped = wrap_torch(module, convert_inputs=_convert_inputs, convert_outputs=convert_padded_outputs)
    return Model(
        "ldnet_lm_embedder",
        _forward,
        init=_init,
        layers=[wrapped],
        dims={"nO": word_width + char_output_width + case_width + lm_output_width},
        attrs={
            "n_word_rows": n_word_rows,
            "word_width": word_width,
            "n_chars": n_chars,
            "max_sequence_length": max_sequence_length,
            "load_glove_if_empty": load_glove_if_empty,
            "case_width": case_width,
            "learn_layer_masks": learn_layer_masks,
            "lm_open_vocab": bool(lm_open_vocab),
            "lm_path": None,
            # Filled at initialize from the checkpoints; saved with the model.
            "lm_vocab_forward": [],
            "lm_vocab_backward": [],
            "lm_lowercase": True,
            "lm_bos": "<s>",
            "lm_unk": "<unk>",
        },
    )


def find_lm_embedder(model: Model) -> Optional[Model]:
    """The ``LMEmbedder`` (v1 or v2) layer inside ``model`` (or ``model`` itself), or None."""
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
    return node.layers[0].shims[0]._model.lm


def _init(model: Model, X: Optional[List[Doc]] = None, Y=None) -> None:
    """Fill the word table (as CharWordEmbedder.v1) and load the LM checkpoints."""
    fill_word_table(model, X, model.layers[0].shims[0]._model.char_word)
    load_lms_into(model, Path(model.attrs["lm_path"]) if model.attrs["lm_path"] else default_lm_path())
    if model.attrs.get("lm_open_vocab") and X:
        check_open_vocab_vectors(model, X[0].vocab)


def check_open_vocab_vectors(model: Model, vocab, n_words: int = 2000, min_cosine: float = 0.99) -> None:
    """Check that ``vocab.vectors`` is the LMs' input-embedding table (``lm_open_vocab``).

    Compares the LM input rows of up to ``n_words`` LM words (after the 4
    special tokens) with their rows in ``vocab.vectors`` (lower-cased lookup).

    Raises: ValueError when fewer than half of them are found or their median
    cosine similarity is below ``min_cosine``; the message names the fix.
    """
    data = to_host(vocab.vectors.data)
    lm = get_lm_module(model)
    for direction in DIRECTIONS:
        encoder = lm.forward_lm if direction == "forward" else lm.backward_lm
        table = encoder.embedding.weight.detach().cpu().numpy()
        words = model.attrs[f"lm_vocab_{direction}"][4 : 4 + n_words]
        rows = find_rows(vocab.vectors, [get_string_id(w.lower()) for w in words])
        found = rows >= 0
        cos = []
        if found.any():
            a = table[4 : 4 + len(words)][found]
            b = data[rows[found]]
            cos = (a * b).sum(-1) / (numpy.linalg.norm(a, axis=-1) * numpy.linalg.norm(b, axis=-1) + 1e-8)
        if found.sum() < len(words) / 2 or float(numpy.median(cos)) < min_cosine:
            raise ValueError(
                f"lm_open_vocab feeds rows of nlp.vocab.vectors to the {direction} LM, but that table is not "
                f"the LM's input embedding ({int(found.sum())} of {len(words)} LM words found"
                + (f", median cosine {float(numpy.median(cos)):.3f}" if len(cos) else "")
                + "). Fix: use the vectors the LMs were trained with (GloVe 6B 50d for the shipped LMs: "
                "spacy_ldnet.glove_vectors.v1), or set lm_open_vocab = false."
            )


def load_lms_into(model: Model, path: Path) -> None:
    """Copy the encoders of ``path/forward`` and ``path/backward`` into an ``LMEmbedder.v1`` layer.

    Raises:
        LMCheckpointError: a checkpoint is missing or corrupt.
        ValueError: its shapes, direction or vocabulary disagree with the architecture.
    """
    from ..lm.checkpoint import load_lm

    lm = model.layers[0].shims[0]._model.lm
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


_INDEX_CACHE: Dict[int, Tuple[list, Dict[int, int]]] = {}


def _lm_index(model: Model, direction: str) -> Dict[int, int]:
    """{string hash: LM id} for one direction (cached per vocabulary list)."""
    vocab = model.attrs[f"lm_vocab_{direction}"]
    key = id(model) * 2 + (direction == "backward")
    cached = _INDEX_CACHE.get(key)
    if cached is None or cached[0] is not vocab:
        cached = (vocab, {get_string_id(tok): i for i, tok in enumerate(vocab)})
        _INDEX_CACHE[key] = cached
    return cached[1]


def lm_token_ids(model: Model, docs: Sequence[Doc], segments: Segments) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """LM input ids, ``(S, T+1)`` int64 each: forward ``<s> w_1..w_n``, backward ``w_1..w_n <s>``.

    Words outside an LM's vocabulary get its ``<unk>`` id.

    Raises: ValueError if the LMs are not loaded (before ``initialize``).
    """
    if not model.attrs["lm_vocab_forward"] or not model.attrs["lm_vocab_backward"]:
        raise ValueError(
            "The LM embedder has no LM vocabulary: it was not initialized. Fix: call nlp.initialize() "
            "or load a trained pipeline."
        )
    S = len(segments.spans)
    T = int(segments.lengths.max()) if S else 0
    attr = LOWER if model.attrs["lm_lowercase"] else ORTH
    out = []
    for direction in DIRECTIONS:
        index = _lm_index(model, direction)
        bos = index[get_string_id(model.attrs["lm_bos"])]
        unk = index.get(get_string_id(model.attrs["lm_unk"]), 1)
        ids = numpy.zeros((S, T + 1), dtype="int64")
        keys_cache = {}
        for s, (i, start, end) in enumerate(segments.spans):
            if i not in keys_cache:
                keys_cache[i] = docs[i].to_array([attr]).astype("uint64").reshape(-1).tolist()
            row = [index.get(k, unk) for k in keys_cache[i][start:end]]
            n = end - start
            if direction == "forward":
                ids[s, 0] = bos
                ids[s, 1 : n + 1] = row
            else:
                ids[s, :n] = row
                ids[s, n] = bos
        out.append(ids)
    return out[0], out[1]


def _forward(model: Model, docs: List[Doc], is_train: bool) -> Tuple[List[Floats2d], Callable]:
    module: LDNetEmbedder = model.layers[0].shims[0]._model
    if module.lm.learn_masks != bool(model.attrs["learn_layer_masks"]):
        module.lm.set_learn_masks(bool(model.attrs["learn_layer_masks"]))

    def make_inputs(feats, segments):
        fw_ids, bw_ids = lm_token_ids(model, docs, segments)
        vectors = None
        if model.attrs.get("lm_open_vocab"):
            vectors = open_vocab_inputs(model, docs, feats.word_rows, fw_ids, bw_ids)
        return feats, fw_ids, bw_ids, vectors

    return embed_forward(model, docs, is_train, make_inputs)


def open_vocab_inputs(
    model: Model, docs: Sequence[Doc], word_rows: numpy.ndarray, fw_ids: numpy.ndarray, bw_ids: numpy.ndarray
) -> Tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray]:
    """The LM inputs of ``lm_open_vocab``: ``(vectors, fw_mask, bw_mask)``.

    Args:
        word_rows: (S, T) int64 rows of ``nlp.vocab.vectors`` (-1: none), as
            :func:`spacy_ldnet.embed.featurize.featurize`.
        fw_ids, bw_ids: (S, T+1) from :func:`lm_token_ids`.
    Returns:
        vectors: (S, T, E) float32, the vectors-table row of word t where it
            has one (else 0), text order, unmodified by fine-tuning;
        fw_mask: (S, T+1) bool, True where the forward LM reads ``vectors``
            instead of its ``<unk>`` row (positions 1..n: ``<s>`` comes first);
        bw_mask: (S, T+1) bool, the same for the backward LM (positions 0..n-1).
    """
    S, T = word_rows.shape
    has = word_rows >= 0  # (S, T)
    masks = []
    for direction, ids in zip(DIRECTIONS, (fw_ids, bw_ids)):
        index = _lm_index(model, direction)
        unk = index.get(get_string_id(model.attrs["lm_unk"]), 1)
        words = ids[:, 1:] if direction == "forward" else ids[:, :-1]  # (S, T) the words' ids
        on = has & (words == unk)  # (S, T)
        mask = numpy.zeros((S, T + 1), dtype=bool)
        if direction == "forward":
            mask[:, 1:] = on
        else:
            mask[:, :-1] = on
        masks.append(mask)
    E = get_lm_module(model).forward_lm.embed_dim
    vectors = numpy.zeros((S, T, E), dtype="float32")
    need = masks[0][:, 1:] | masks[1][:, :-1]  # (S, T)
    if need.any():
        data = to_host(docs[0].vocab.vectors.data)
        vectors[need] = data[word_rows[need]]
    return vectors, masks[0], masks[1]


def _convert_inputs(model: Model, inputs, is_train: bool):
    feats, fw_ids, bw_ids, vectors = inputs
    device = model.shims[0].device
    args = char_word_torch_args(feats, device) + (
        xp2torch(fw_ids, device=device),
        xp2torch(bw_ids, device=device),
        torch.from_numpy(feats.lengths),
    )
    kwargs = char_word_torch_kwargs(feats, model.shims[0]._model.char_word, device)
    if vectors is not None:
        kwargs["lm_vectors"] = tuple(xp2torch(v, device=device) for v in vectors)
    return ArgsKwargs(args=args, kwargs=kwargs), lambda d: inputs
