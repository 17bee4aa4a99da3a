"""Pretraining the dense LSTM LM (LD-Net, Liu et al. 2018; ELMo-C outputs, Li et al. 2019).

Single process::

    spacy-ldnet pretrain-lm --train a.txt.gz b.txt.gz --valid v.txt.gz --output checkpoints/fw

Several processes (one shard of the corpus each, gradients averaged with
:class:`torch.nn.parallel.DistributedDataParallel`; gloo on CPU, nccl on
CUDA)::

    torchrun --nproc_per_node 2 -m spacy_ldnet.cli.pretrain_lm --train ... --output ...

Layout of ``--output`` (only rank 0 writes)::

    vocab.txt, vocab_stats.json     vocabulary (built once, reused on resume)
    checkpoints/step-NNNNNNNN/      model.safetensors + config.json + vocab.txt
                                    (spacy_ldnet.lm.checkpoint.save_lm)
                                    + trainer_state.json + trainer_state.safetensors
                                    (optimizer, step, tokens, elapsed time, RNG
                                    states and data position of every rank)
    checkpoints/latest              name of the newest complete checkpoint
    log.jsonl                       one JSON record per log line / validation
    metrics.json                    summary: last and best validation figures
    model/                          final model (save_lm), when the run ends

A run started on an ``--output`` that holds ``checkpoints/latest`` resumes
from it (unless ``resume=False``), losing at most ``checkpoint_every`` steps;
with the same settings, the resumed run is bit-identical on CPU to an
uninterrupted one. The implementation is in :mod:`spacy_ldnet.lm.training`;
this module holds the entry point and re-exports the public names.
"""
import contextlib
import traceback
from typing import Callable, Optional

import torch

from .training.checkpoints import find_latest_checkpoint
from .training.distributed import init_distributed, shutdown_distributed
from .training.evaluate import evaluate
from .training.export import export_model, param_digest
from .training.loop import Trainer
from .training.runlog import read_log
from .training.settings import OUTPUT_LAYERS, PretrainConfig, PretrainError, parse_duration

__all__ = [
    "OUTPUT_LAYERS",
    "PretrainConfig",
    "PretrainError",
    "evaluate",
    "export_model",
    "find_latest_checkpoint",
    "param_digest",
    "parse_duration",
    "pretrain",
    "read_log",
]


def pretrain(cfg: PretrainConfig, *, step_callback: Optional[Callable[[int], None]] = None) -> dict:
    """Run (or resume) pretraining; returns the summary also written to ``metrics.json``.

    step_callback: called with the step number after every optimizer step
        (and after that step's checkpoint, if any).

    Under ``torchrun`` (``WORLD_SIZE`` > 1) every process calls this; each
    reads its own shard, gradients are averaged by DDP, and rank 0 alone
    writes files (other ranks return ``{}``). ``max_time`` and ``max_steps``
    are decided on rank 0 and broadcast so all ranks stop at the same step.
    The process group created here is destroyed, and its threads joined,
    before this returns or raises.

    Raises:
        PretrainError: bad settings, or an unreadable checkpoint to resume.
        LMDataError: missing/empty corpus files.
    """
    cfg.validate()
    torch.set_num_threads(cfg.threads)
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)
    dist = init_distributed(cfg.device)
    try:
        return Trainer(cfg, dist, step_callback).run()
    except BaseException as e:
        if dist.enabled:  # the traceback's frames hold the trainer, whose DDP wrapper holds the process group
            traceback.clear_frames(e.__traceback__)
        raise
    finally:
        shutdown_distributed(dist)
