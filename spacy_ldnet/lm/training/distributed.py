"""Process group set-up and tear-down for data-parallel pretraining under ``torchrun``.

One process per rank (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` from the
launcher); gloo on CPU, nccl on CUDA. Gradients are averaged by
:class:`torch.nn.parallel.DistributedDataParallel`.

Exit order. The gloo backend runs worker threads that may still hold the
tensors of a finished collective for a moment after it returns. If they are
alive when the interpreter finalizes and release a tensor that Python
created, they must take the GIL, which a finalizing interpreter refuses by
ending the thread; a thread ended inside a C++ destructor aborts the process
("terminate called without an active exception"). The worker threads are
joined only when the last reference to the process group is dropped, so
:func:`shutdown_distributed` drops every reference this package holds and
destroys the group while the interpreter is fully alive. Some torch modules
take the default group as a default argument value when they are imported
(``group=group.WORLD``), which would pin it until finalization: they are
imported before the group exists (:func:`init_distributed`).
"""
import gc
import os
from dataclasses import dataclass

import torch


@dataclass
class Dist:
    """This process's place in the run: ``rank`` of ``world_size`` (1: no process group)."""

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

    def all_gather_object(self, obj) -> list:
        """``[obj of rank 0, obj of rank 1, ...]`` (collective; ``[obj]`` in one process)."""
        if not self.enabled:
            return [obj]
        out = [None] * self.world_size
        torch.distributed.all_gather_object(out, obj)
        return out

    def all_reduce_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over ranks in place (collective; unchanged in one process)."""
        if self.enabled:
            torch.distributed.all_reduce(tensor)
        return tensor


def init_distributed(device: str) -> Dist:
    """Join the process group the launcher describes, or return a one-process :class:`Dist`.

    ``device``: ``"cpu"`` (gloo) or ``"cuda[:N]"`` (nccl, on ``cuda:LOCAL_RANK``).
    A group that already exists (created by the caller) is used as it is and
    left to the caller to destroy.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as tdist

    # imported before the default group exists, so that no default argument
    # value in them holds the group (see the module docstring)
    import torch._dynamo  # noqa: F401
    import torch.distributed.nn  # noqa: F401

    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    here = False
    if not tdist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        tdist.init_process_group(backend=backend)
        here = True
    return Dist(rank=tdist.get_rank(), world_size=tdist.get_world_size(), local_rank=local_rank, initialized_here=here)


def shutdown_distributed(dist: Dist) -> None:
    """Destroy the process group :func:`init_distributed` created, joining its worker threads.

    Call it after the training objects (the DDP wrapper holds the group) are
    out of scope; a reference cycle that still holds one is collected first.
    """
    if not (dist.initialized_here and torch.distributed.is_initialized()):
        return
    gc.collect()
    torch.distributed.destroy_process_group()
