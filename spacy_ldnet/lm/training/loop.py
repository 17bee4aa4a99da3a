"""The pretraining loop of one process (:class:`Trainer`).

Each step: forward and backward on this rank's batch (gradients averaged by
DDP across ranks), gradient-norm clipping, an Adam step, then one small
all-reduce of ``[tokens, loss sum, targets, stop flag of rank 0]`` so every
rank counts the same tokens and stops at the same step. Rank 0 alone writes
files; validation runs on rank 0 without touching the training RNG.
"""
import contextlib
import json
import math
import shutil
import sys
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Callable, List, Optional

import torch

from ..config import CONTINUOUS_OUTPUTS
from ..data import Vocab, build_vocab
from .batches import Batch, BatchStream
from .build import build_model, copy_trained_weights, load_init, unwrap
from .checkpoints import ckpt_root, find_latest_checkpoint, load_checkpoint, save_checkpoint
from .distributed import Dist
from .evaluate import evaluate, length_mask
from .export import param_digest, save_lm_replacing
from .runlog import append_log, format_valid, jsonable, truncate_log, valid_history, write_json
from .settings import PretrainConfig, PretrainError
from .state import preserved_rng, rng_state, set_rng_state


def should_stop(cfg: PretrainConfig, step: int, elapsed: float) -> bool:
    """``max_steps`` reached or ``max_time`` (seconds) spent."""
    if cfg.max_steps is not None and step >= cfg.max_steps:
        return True
    return cfg.max_time is not None and elapsed >= cfg.max_time


class Trainer:
    """One rank's part of a pretraining run: set-up (resume or start), the loop, the final model.

    ``step_callback`` is called with the step number after every optimizer
    step (and after that step's checkpoint, if any).

    Raises (on construction):
        PretrainError: an unreadable or incompatible checkpoint or ``--init-from`` LM.
        LMDataError: missing or empty corpus files.
    """

    def __init__(self, cfg: PretrainConfig, dist: Dist, step_callback: Optional[Callable[[int], None]] = None):
        self.cfg, self.dist, self.step_callback = cfg, dist, step_callback
        on_cuda = cfg.device.startswith("cuda")
        self.device = torch.device(f"cuda:{dist.local_rank}" if on_cuda and dist.enabled else cfg.device)
        self.use_amp = self.device.type == "cuda" and cfg.amp is not False
        if cfg.amp and self.device.type != "cuda" and dist.is_main:
            warnings.warn("Mixed precision (--amp) is only used on CUDA; training in float32 on CPU.")
        self.out_dir = Path(cfg.output)
        self.log_path = self.out_dir / "log.jsonl"
        self.step, self.tokens_seen, self.elapsed_before = 0, 0, 0.0
        self.pbar = None
        self.t_start = time.time()
        self._setup()

    # -- set-up ------------------------------------------------------------
    def _setup(self) -> None:
        cfg, dist = self.cfg, self.dist
        latest = self._prepare_output()
        state = loaded = init = vocab_tokens = None
        if latest is not None:
            state, loaded, vocab_tokens = load_checkpoint(latest, cfg, dist.world_size)
        elif cfg.init_from is not None:
            init, vocab_tokens = load_init(cfg)
        self.vocab = self._get_vocab(vocab_tokens)
        if init is not None and dist.is_main:
            self.vocab.save(self.out_dir / "vocab.txt")
        model, has_glove = build_model(cfg, self.vocab)
        if loaded is not None:
            model.load_state_dict(loaded.state_dict())
        elif init is not None:
            copy_trained_weights(init, model, cfg.init_from)
        del loaded, init
        model.to(self.device)
        continuous = cfg.output_layer in CONTINUOUS_OUTPUTS
        self.target_has_vector = has_glove.to(self.device) if continuous else None
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(self.params, lr=cfg.lr)
        if dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            model = DDP(model, device_ids=[dist.local_rank] if self.device.type == "cuda" else None)
        self.model = model
        self.stream = BatchStream(
            cfg.train, self.vocab, batch_size=cfg.batch_size, direction=cfg.direction, rank=dist.rank,
            world_size=dist.world_size, seed=cfg.seed, buffer_size=cfg.buffer_size, max_len=cfg.max_len,
        )
        self._restore_position(state)
        self._log_start(resumed=state is not None)
        self.extra = {
            "direction": cfg.direction, "lowercase": cfg.lowercase, "bos": "<s>", "eos": "</s>",
            "unk": "<unk>", "pad": "<pad>", "input_embeddings": cfg.input_embeddings,
            "train_files": [Path(p).name for p in cfg.train],
        }
        self.history = valid_history(self.log_path) if dist.is_main else []

    def _prepare_output(self) -> Optional[Path]:
        """Create ``--output``; find the checkpoint to resume (or clear old ones with resume=False)."""
        out = self.out_dir
        if self.dist.is_main:
            out.mkdir(parents=True, exist_ok=True)
            if not self.cfg.resume:
                if ckpt_root(out).exists():
                    shutil.rmtree(ckpt_root(out))
                for f in ("log.jsonl", "metrics.json"):
                    (out / f).unlink(missing_ok=True)
        self.dist.barrier()
        return find_latest_checkpoint(out) if self.cfg.resume else None

    def _get_vocab(self, tokens: Optional[List[str]]) -> Vocab:
        cfg, dist, out = self.cfg, self.dist, self.out_dir
        if tokens is not None:
            return Vocab(tokens, lowercase=cfg.lowercase)
        if cfg.vocab:
            vocab = Vocab.load(cfg.vocab, lowercase=cfg.lowercase)
            if dist.is_main:
                vocab.save(out / "vocab.txt")
            return vocab
        if dist.is_main:
            vocab, stats = build_vocab(cfg.train, max_size=cfg.vocab_size, min_count=cfg.min_count,
                                       lowercase=cfg.lowercase)
            vocab.save(out / "vocab.txt")
            write_json(out / "vocab_stats.json", stats)
        dist.barrier()
        if not dist.is_main:
            vocab = Vocab.load(out / "vocab.txt", lowercase=cfg.lowercase)
        return vocab

    def _restore_position(self, state: Optional[dict]) -> None:
        """Counters, optimizer, data position and RNG of a checkpoint, or the seeded start of a new run."""
        if state is None:
            torch.manual_seed(self.cfg.seed * 1000 + 1 + self.dist.rank)  # dropout differs per rank
            self.stream.buffer_index = self.cfg.start_buffer
            return
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.tokens_seen, self.elapsed_before = state["step"], state["tokens_seen"], state["elapsed"]
        self.stream.load_state_dict(state["data"][self.dist.rank])
        set_rng_state(state["rng"][self.dist.rank])

    def _log_start(self, resumed: bool) -> None:
        if not self.dist.is_main:
            return
        cfg = self.cfg
        if resumed:
            truncate_log(self.log_path, self.step)
        append_log(self.log_path, {
            "event": "resume" if resumed else "start", "step": self.step, "tokens_seen": self.tokens_seen,
            "world_size": self.dist.world_size, "device": str(self.device), "threads": cfg.threads,
            "config": jsonable(asdict(cfg)),
            "n_params": sum(p.numel() for p in unwrap(self.model).parameters()),
            "n_trainable": sum(p.numel() for p in self.params), "vocab_size": len(self.vocab),
            "init_from": None if resumed else cfg.init_from,
            "start_buffer": None if resumed else cfg.start_buffer,
        })

    # -- the loop ---------------------------------------------------------------
    def elapsed(self) -> float:
        """Training seconds of this run and the runs it resumes."""
        return self.elapsed_before + (time.time() - self.t_start)

    def run(self) -> dict:
        """Train until ``max_steps`` / ``max_time``; validate, checkpoint and write ``model/``.

        Returns: the summary written to ``metrics.json`` on rank 0, ``{}`` on other ranks.

        Raises:
            PretrainError: the training loss became NaN or infinite.
        """
        self._open_progress()
        self.t_start = time.time()
        self.model.train()
        batches = iter(self.stream)
        self._window = [0.0, 0.0, 0.0, time.time()]  # loss sum, targets, tokens, start
        stop = should_stop(self.cfg, self.step, self.elapsed_before)
        while not stop:
            stop = self._train_step(next(batches))
            self._after_step(stop)
        if self.pbar is not None:
            self.pbar.close()
        self._run_eval()
        self._save()
        digests = self.dist.all_gather_object(param_digest(self.model))
        summary = self._write_final(digests) if self.dist.is_main else {}
        self.dist.barrier()
        return summary

    def _train_step(self, batch: Batch) -> bool:
        """One optimizer step on ``batch``; returns the stop decision shared by all ranks."""
        cfg = self.cfg
        batch = batch.to(self.device)
        targets = batch.targets
        mask = length_mask(batch.lengths, targets.shape[1])
        if self.target_has_vector is not None:
            mask = mask & self.target_has_vector[targets]
        amp = torch.autocast(device_type="cuda", dtype=torch.bfloat16) if self.use_amp else contextlib.nullcontext()
        with amp:
            out = self.model(batch.token_ids, batch.lengths, targets, target_mask=mask)
        self.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        if cfg.clip and cfg.clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, cfg.clip)
        self.optimizer.step()
        self.step += 1
        self._step_elapsed = self.elapsed()
        stop_here = self.dist.is_main and should_stop(cfg, self.step, self._step_elapsed)
        stats = torch.tensor(
            [float(batch.n_tokens), float(out.loss_sum.detach()), float(out.n_targets), 1.0 if stop_here else 0.0],
            dtype=torch.float64, device=self.device,
        )
        n_tok, l_sum, n_tgt, stop_flag = self.dist.all_reduce_(stats).tolist()
        self.tokens_seen += int(n_tok)
        self._window[0] += l_sum
        self._window[1] += n_tgt
        self._window[2] += n_tok
        if not math.isfinite(l_sum):
            raise PretrainError(
                f"Training loss became {l_sum} at step {self.step}. Fix: lower --lr or --clip, "
                f"then resume from the last checkpoint."
            )
        return stop_flag > 0

    def _after_step(self, stop: bool) -> None:
        cfg, step = self.cfg, self.step
        if self.dist.is_main and (step % cfg.log_every == 0 or stop):
            self._log_train()
        if self.pbar is not None:
            self.pbar.update(1)
        if step % cfg.eval_every == 0 and not stop:
            self._run_eval()
        if step % cfg.checkpoint_every == 0 and not stop:
            self._save()
        if self.step_callback is not None:
            self.step_callback(step)

    def _log_train(self) -> None:
        loss_sum, n_targets, n_tokens, t0 = self._window
        rec = {"event": "train", "step": self.step, "tokens_seen": self.tokens_seen, "elapsed": self._step_elapsed,
               "loss": loss_sum / max(1.0, n_targets), "tokens_per_s": n_tokens / max(1e-9, time.time() - t0)}
        append_log(self.log_path, rec)
        if self.pbar is not None:
            self.pbar.set_postfix(loss=f"{rec['loss']:.4f}", tok_s=f"{rec['tokens_per_s']:.0f}", refresh=False)
        self._window = [0.0, 0.0, 0.0, time.time()]

    def _open_progress(self) -> None:
        if self.dist.is_main and self.cfg.progress:
            from tqdm import tqdm

            self.pbar = tqdm(
                total=self.cfg.max_steps, initial=self.step, unit="step", dynamic_ncols=True,
                mininterval=1.0 if sys.stderr.isatty() else 30.0, file=sys.stderr,
            )

    # -- validation, checkpoints, final model -------------------------------------
    def _run_eval(self) -> None:
        if not self.dist.is_main or not self.cfg.valid:
            return
        with preserved_rng():
            res = evaluate(self.model, self.cfg, self.vocab, self.device)
        rec = {"event": "valid", "step": self.step, "tokens_seen": self.tokens_seen, "elapsed": self.elapsed(), **res}
        self.history.append(rec)
        append_log(self.log_path, rec)
        if self.pbar is not None:
            self.pbar.write(format_valid(rec))

    def _save(self) -> None:
        """Write a resumable checkpoint (collective: every rank sends its data position and RNG state)."""
        data_states = self.dist.all_gather_object(self.stream.state_dict())
        rng_states = self.dist.all_gather_object(rng_state())
        if not self.dist.is_main:
            return
        state = {
            "step": self.step, "tokens_seen": self.tokens_seen, "elapsed": self.elapsed(),
            "optimizer": self.optimizer.state_dict(), "data": data_states, "rng": rng_states,
            "world_size": self.dist.world_size, "config": jsonable(asdict(self.cfg)),
        }
        extra = dict(self.extra, step=self.step, tokens_seen=self.tokens_seen)
        save_checkpoint(self.out_dir, unwrap(self.model), self.vocab.tokens, extra, state, self.cfg.keep_checkpoints)

    def _write_final(self, digests: List[str]) -> dict:
        """Rank 0: ``model/``, ``metrics.json`` and the end record of ``log.jsonl``; returns the summary."""
        extra = dict(self.extra, step=self.step, tokens_seen=self.tokens_seen)
        save_lm_replacing(self.model, self.vocab.tokens, self.out_dir / "model", dtype="float32", extra=extra)
        valids = [h for h in self.history if h.get("event") == "valid"]
        summary = {
            "step": self.step, "tokens_seen": self.tokens_seen, "elapsed_s": self.elapsed(),
            "world_size": self.dist.world_size, "device": str(self.device), "threads": self.cfg.threads,
            "vocab_size": len(self.vocab), "last_valid": valids[-1] if valids else None,
            "best_valid": min(valids, key=lambda r: r["valid_loss"]) if valids else None,
            "param_digests": digests, "ranks_in_sync": len(set(digests)) == 1,
            "config": jsonable(asdict(self.cfg)),
        }
        stats_path = self.out_dir / "vocab_stats.json"
        if stats_path.exists():
            summary["vocab_stats"] = json.loads(stats_path.read_text(encoding="utf-8"))
        write_json(self.out_dir / "metrics.json", summary)
        append_log(self.log_path, {"event": "end", "step": self.step, "tokens_seen": self.tokens_seen,
                                   "elapsed": summary["elapsed_s"], "ranks_in_sync": summary["ranks_in_sync"]})
        return summary
