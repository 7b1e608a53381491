"""One process or many: torch.distributed set-up and the few collectives the trainer needs.

Why a module of its own: the trainer must run unchanged as a plain process, under
``torchrun --nproc_per_node=N`` on CPU (gloo) and on GPUs (NCCL), with the model replicated (DDP) or
sharded (FSDP). Every helper here degrades to a no-op without a process group, so the training loop
never branches on "am I distributed". Process management is torchrun's job, never ours.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from .utils import get_logger, resolve_device

log = get_logger(__name__)

PARALLEL_MODES: tuple[str, ...] = ("ddp", "fsdp")


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: its global rank, the number of processes, and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """True when a process group exists (even of size 1)."""
        return dist.is_available() and dist.is_initialized()


def init_distributed(device: str | torch.device | None = None, backend: str | None = None) -> DistInfo:
    """Read torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK) and join the process group.

    Without those variables this is a plain single process and no group is created. ``device``:
    None/"auto" picks CUDA when available (then each process takes GPU ``LOCAL_RANK``), "cpu" forces
    CPU. The backend defaults to NCCL on CUDA and gloo on CPU. Calling it twice is harmless.

    Returns:
        DistInfo for this process.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank if dev.index is None else dev.index)
        torch.cuda.set_device(dev)
    if "WORLD_SIZE" in os.environ and not dist.is_initialized():
        backend = backend or ("nccl" if dev.type == "cuda" else "gloo")
        dist.init_process_group(backend=backend, device_id=dev if dev.type == "cuda" else None)
        if rank == 0:
            log.info("joined a process group of %d (%s, rank 0 on %s)", world, backend, dev)
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, device=dev)


def destroy_distributed() -> None:
    """Leave the process group, if any (end of training)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_main() -> bool:
    """True on rank 0 or in a plain process: only the main process logs and writes files."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def barrier() -> None:
    """Synchronise all processes; a no-op without a process group."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over processes (a copy; ``x`` itself is left untouched). Identity without a group."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x.clone()
    y = x.detach().clone()
    dist.all_reduce(y, op=dist.ReduceOp.SUM)
    return y / dist.get_world_size()


def all_gather_objects(obj) -> list:
    """``[obj of rank 0, obj of rank 1, ...]``; ``[obj]`` without a group (used for per-rank RNG states)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def wrap_model(module: nn.Module, info: DistInfo, mode: str = "ddp", shard: type[nn.Module] | None = None) -> nn.Module:
    """Make ``module`` data-parallel when a process group exists; return it unchanged otherwise.

    ``mode="ddp"`` replicates it (gradients all-reduced in buckets during backward); ``"fsdp"`` shards
    parameters, gradients and optimizer state with FSDP2 ``fully_shard``: each submodule of type
    ``shard`` (the transformer blocks) becomes one unit gathered just before its forward, and the rest
    (embeddings, head) is the root unit. Use FSDP for models whose Adam state does not fit one device.
    """
    if mode not in PARALLEL_MODES:
        raise ValueError(f"unknown parallel mode {mode!r}; choose one of {PARALLEL_MODES}")
    if not info.enabled:
        return module
    if mode == "ddp":
        from torch.nn.parallel import DistributedDataParallel as DDP

        device_ids = [info.device.index] if info.device.type == "cuda" else None
        return DDP(module, device_ids=device_ids)
    from torch.distributed.fsdp import fully_shard

    if shard is not None:
        for sub in module.modules():
            if isinstance(sub, shard):
                fully_shard(sub)
    return fully_shard(module)
