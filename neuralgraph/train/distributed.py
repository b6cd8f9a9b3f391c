"""Multi-process data-parallel training (``torch.distributed``, launched with ``torchrun``).

``torchrun --nproc-per-node N -m neuralgraph train ...`` sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``;
:func:`init_distributed` reads them, picks ``gloo`` on CPU and ``nccl`` on
CUDA, and pins each process to its local GPU. Without those variables (or with
``WORLD_SIZE=1``) everything degrades to a plain single process, so the
trainer has one code path.

Sharding follows ``DistributedSampler``: every rank draws the same
permutation (seeded by ``(seed, epoch)``), the index list is padded by
wrapping around to a multiple of the world size, and rank ``r`` takes every
``world``-th index from position ``r``. All ranks therefore run the same number
of optimizer steps, which DDP's gradient all-reduce requires. Evaluation uses
unpadded shards and sums ``(loss, correct, count)`` over ranks, so metrics are
exact.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ..seeding import derive_seed

__all__ = [
    "DistInfo", "init_distributed", "shutdown_distributed", "shard_indices", "eval_shard",
    "all_reduce_sum", "all_gather_objects", "broadcast_object", "wrap_model", "unwrap_model", "barrier",
]

_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job (``world_size == 1``: no process group)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        """Whether the job has several processes (``world_size > 1``, a process group exists)."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Only the main process writes metrics, checkpoints and pictures."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def init_distributed(device: str | torch.device = "cpu") -> tuple[DistInfo, torch.device]:
    """Join the process group described by the torchrun environment variables.

    Returns the rank information and the device this process should use
    (``cuda:LOCAL_RANK`` for CUDA jobs). Idempotent: an already initialised
    default group is reused.
    """
    device = torch.device(device)
    world = _env_int("WORLD_SIZE", 1)
    if world < 1:
        raise ValueError(f"environment variable WORLD_SIZE={world} must be >= 1 (it is the number of processes)")
    if world == 1:
        return DistInfo(), device
    missing = [k for k in _ENV if k not in os.environ]
    if missing:
        raise ValueError(f"WORLD_SIZE={world} but {missing} are not set; launch with torchrun "
                         "(e.g. `torchrun --nproc-per-node 2 -m neuralgraph train ...`)")
    rank, local_rank, port = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0), _env_int("MASTER_PORT", 0)
    if not 0 <= rank < world:
        raise ValueError(f"RANK={rank} is outside 0..{world - 1}")
    if local_rank < 0:
        raise ValueError(f"LOCAL_RANK={local_rank} must be >= 0")
    if not 0 < port < 65536:
        raise ValueError(f"MASTER_PORT={port} is not a TCP port (1..65535)")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device 'cuda' requested but CUDA is not available")
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} GPUs are visible")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    elif device.type == "cpu":
        backend = "gloo"
    else:
        raise ValueError(f"distributed training supports cpu (gloo) and cuda (nccl), not {device}")
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world)
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, backend=backend), device


def shutdown_distributed(info: DistInfo) -> None:
    """Destroy the process group that :func:`init_distributed` started (no-op for a single process)."""
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def shard_indices(n: int, info: DistInfo, *, seed: int = 0, epoch: int = 0, shuffle: bool = True) -> Tensor:
    """This rank's training indices for one epoch (same length on every rank).

    The permutation depends only on ``(seed, epoch)``, never on state carried
    between epochs, so a resumed run sees the same order as an uninterrupted one.
    """
    if n < 1:
        raise ValueError("cannot shard an empty dataset")
    if shuffle:
        g = torch.Generator().manual_seed(derive_seed(seed, epoch))
        order = torch.randperm(n, generator=g)
    else:
        order = torch.arange(n)
    per_rank = -(-n // info.world_size)
    total = per_rank * info.world_size
    if total > n:                                   # pad by wrapping around, like DistributedSampler
        order = torch.cat([order, order.repeat(-(-(total - n) // n))[: total - n]])
    return order[info.rank:total:info.world_size]


def eval_shard(n: int, info: DistInfo) -> Tensor:
    """Unpadded strided shard for evaluation (shards are disjoint and cover ``range(n)``)."""
    return torch.arange(n)[info.rank::info.world_size]


def all_reduce_sum(t: Tensor, info: DistInfo) -> Tensor:
    """Sum ``t`` over ranks (in place; returned for chaining). No-op on one process."""
    if info.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """``[obj_rank0, obj_rank1, ...]`` on every rank (``[obj]`` on one process)."""
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, info: DistInfo, src: int = 0) -> Any:
    """``obj`` from rank ``src`` on every rank (e.g. an error message, so all ranks stop together)."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op for a single process)."""
    if info.enabled:
        dist.barrier()


def wrap_model(model: nn.Module, info: DistInfo, device: torch.device) -> nn.Module:
    """``DistributedDataParallel`` around ``model`` for multi-process jobs, else ``model``.

    DDP broadcasts rank 0's parameters on construction, so all ranks start
    identical, and averages gradients during ``backward``.
    """
    if not info.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    if device.type == "cuda":
        return DDP(model, device_ids=[device.index], output_device=device.index)
    return DDP(model)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain model inside a DDP wrapper (used for evaluation and checkpoints)."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    return model.module if isinstance(model, DDP) else model
