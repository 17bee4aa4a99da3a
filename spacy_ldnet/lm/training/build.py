"""The model a pretraining run trains: built from its settings, or started from an exported LM."""
from typing import List, Optional, Tuple

import torch

from ..checkpoint import LMCheckpointError, load_lm
from ..config import CONTINUOUS_OUTPUTS, LMConfig
from ..data import SPECIAL_TOKENS, Vocab
from ..model import DenseLSTMLM
from ..outputs import glove_target_table
from .settings import PretrainConfig, PretrainError


def unwrap(model):
    """The bare LM inside a DDP wrapper (or ``model`` itself)."""
    return model.module if hasattr(model, "module") else model


def glove_rows(vocab: Vocab, glove_path: Optional[str]) -> Tuple[torch.Tensor, torch.Tensor]:
    """GloVe rows of the vocabulary, looked up by lower-cased form.

    Returns: ``(table (V, 50) float32, has_vector (V,) bool)``; the special
    tokens never have a vector.

    Raises:
        PretrainError: the GloVe table cannot be read (the message names the fix).
    """
    from ...glove import GloveNotFoundError, load_glove

    try:
        glove = load_glove(glove_path)
    except GloveNotFoundError as e:
        where = f"--glove {glove_path}: " if glove_path else ""
        raise PretrainError(f"{where}{e}") from e
    table, has = glove_target_table(vocab.tokens, glove=glove, lowercase=True)
    n = len(SPECIAL_TOKENS)
    table[:n] = 0.0
    has[:n] = False
    return table, has


def _lm_config(cfg: PretrainConfig, vocab_size: int) -> LMConfig:
    cutoffs = tuple(c for c in cfg.cutoffs if 0 < c < vocab_size)
    if cfg.output_layer == "adaptive" and not cutoffs:
        cutoffs = (max(1, vocab_size // 5),)  # small vocabularies: one tail cluster
    return LMConfig(
        vocab_size=vocab_size,
        embed_dim=cfg.embed_dim,
        hidden_dim=cfg.hidden,
        num_layers=cfg.layers,
        dropout=cfg.dropout,
        layer_dropout=cfg.layer_dropout,
        output=cfg.output_layer,
        cutoffs=cutoffs,
        freeze_input=cfg.freeze_input and cfg.input_embeddings == "glove",
        direction=cfg.direction,
    )


def build_model(cfg: PretrainConfig, vocab: Vocab) -> Tuple[DenseLSTMLM, Optional[torch.Tensor]]:
    """Create the model with seed-``cfg.seed`` initialisation (identical on all ranks).

    GloVe input embeddings: rows without a GloVe vector (specials, rare words)
    get small random vectors with the spread of GloVe, from a generator seeded
    with ``cfg.seed + 17``. Continuous outputs (ELMo-C, Li et al. 2019) predict
    the GloVe rows of the targets.

    Returns: ``(model, has_glove (V,) bool tensor, or None when GloVe is not used)``.
    """
    need_glove = cfg.input_embeddings == "glove" or cfg.output_layer in CONTINUOUS_OUTPUTS
    table = has = None
    if need_glove:
        table, has = glove_rows(vocab, cfg.glove)
    lm_cfg = _lm_config(cfg, len(vocab))
    torch.manual_seed(cfg.seed)
    continuous = cfg.output_layer in CONTINUOUS_OUTPUTS
    model = DenseLSTMLM(lm_cfg, target_vectors=table if continuous else None, has_vector=has if continuous else None)
    if cfg.input_embeddings == "glove":
        emb = table.clone()
        g = torch.Generator().manual_seed(cfg.seed + 17)
        std = float(emb[has].std()) if has.any() else 0.4
        missing = ~has
        emb[missing] = torch.randn(int(missing.sum()), emb.shape[1], generator=g) * std
        model.set_input_embeddings(emb, freeze=lm_cfg.freeze_input)
    return model, has


def load_init(cfg: PretrainConfig) -> Tuple[DenseLSTMLM, List[str]]:
    """Load the exported LM of ``cfg.init_from`` and check it fits ``cfg``.

    Returns: ``(model, vocabulary list)``.

    Raises:
        PretrainError: unreadable export, or one whose architecture, direction or
            vocabulary differs from this run's settings (the message names the setting).
    """
    try:
        model, vocab, _ = load_lm(cfg.init_from)
    except LMCheckpointError as e:
        raise PretrainError(f"--init-from {cfg.init_from}: {e}") from e
    c = model.config
    wanted = {
        "layers": (c.num_layers, cfg.layers),
        "hidden": (c.hidden_dim, cfg.hidden),
        "embed-dim": (c.embed_dim, cfg.embed_dim),
        "output-layer": (c.output, cfg.output_layer),
        "direction": (c.direction, cfg.direction),
    }
    for name, (theirs, ours) in wanted.items():
        if theirs != ours:
            raise PretrainError(
                f"--init-from {cfg.init_from} has {name} {theirs!r} but this run asks for {ours!r}. "
                f"Fix: pass --{name} {theirs}, or start without --init-from."
            )
    if cfg.vocab and list(Vocab.load(cfg.vocab, lowercase=cfg.lowercase).tokens) != list(vocab):
        raise PretrainError(
            f"--vocab {cfg.vocab} differs from {cfg.init_from}/vocab.txt. Fix: drop --vocab "
            f"(the exported LM's vocabulary is used) or pass that vocab.txt."
        )
    return model, vocab


def copy_trained_weights(src: DenseLSTMLM, model: DenseLSTMLM, where: str) -> None:
    """Copy ``src``'s trainable parameters into ``model`` (same architecture).

    Frozen tensors (GloVe inputs, continuous-output targets) keep the values the
    run builds itself: exports store float16, the run's own table is float32.

    Raises:
        PretrainError: a trainable tensor of ``model`` is missing from ``src`` or has another shape.
    """
    theirs = src.state_dict()
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name in trainable:
                if name not in theirs or tuple(theirs[name].shape) != tuple(t.shape):
                    raise PretrainError(
                        f"--init-from {where}: tensor {name} is missing or has another shape. "
                        f"Fix: use an export of the same architecture."
                    )
                t.copy_(theirs[name].to(t.dtype))
