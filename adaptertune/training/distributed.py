"""Data-parallel training under ``torchrun`` (or any launcher that sets RANK / WORLD_SIZE / LOCAL_RANK).

One process per device; gloo on CPU, nccl on GPU. Rank 0 alone writes the run store; every rank reads
checkpoints from the same run directory, so several nodes need a shared file system for the store.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def _pick_device(preference: str | None, local_rank: int, world_size: int) -> torch.device:
    """``cuda:N`` as asked; ``cuda``/``auto``/None on GPU N = the process's local rank under DDP, else
    ``$LOCAL_RANK`` when a launcher set it (N independent shard processes on N GPUs), else the current device."""
    if preference not in (None, "auto"):
        device = torch.device(preference)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device={preference!r} is not available: torch sees no CUDA device (use 'cpu' or None)")
        if device.type == "cuda" and (world_size > 1 or device.index is None):
            device = torch.device("cuda", _gpu_index(local_rank, world_size))
        return device
    if torch.cuda.is_available():
        return torch.device("cuda", _gpu_index(local_rank, world_size))
    return torch.device("cpu")


def _gpu_index(local_rank: int, world_size: int) -> int:
    if world_size > 1:
        return local_rank
    if "LOCAL_RANK" in os.environ:
        index = int(os.environ["LOCAL_RANK"])
        if not 0 <= index < torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK={index} is not allowed: torch sees {torch.cuda.device_count()} "
                             "CUDA device(s)")
        return index
    return torch.cuda.current_device()


def setup(device: str | None = None) -> DistContext:
    """Join (or start) the process group described by the environment; a single process needs nothing."""
    if dist.is_available() and dist.is_initialized():
        world_size, rank = dist.get_world_size(), dist.get_rank()
        local_rank = int(os.environ.get("LOCAL_RANK", rank))
        return DistContext(rank, world_size, local_rank, _pick_device(device, local_rank, world_size))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        dev = _pick_device(device, 0, 1)
        if dev.type == "cuda":  # else the DataLoader's pin-memory thread opens a context on GPU 0 for every shard
            torch.cuda.set_device(dev)
        return DistContext(0, 1, 0, dev)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    dev = _pick_device(device, local_rank, world_size)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistContext(rank, world_size, local_rank, dev)


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.active:
        dist.barrier()


def all_reduce_sum(ctx: DistContext, tensor: torch.Tensor) -> torch.Tensor:
    """In-place sum over ranks (a no-op for one process); returns the tensor for chaining."""
    if ctx.active:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def agreed(ctx: DistContext, decision: bool) -> bool:
    """Rank 0's ``decision`` on every rank (a no-op for one process): a choice read from shared files (is this run
    finished?) can differ between ranks that read it a moment apart, and ranks that branch apart deadlock."""
    if not ctx.active:
        return decision
    flag = torch.tensor([float(decision) if ctx.is_main else 0.0], device=ctx.device)
    return bool(all_reduce_sum(ctx, flag).item() > 0.5)


def gather_rows(ctx: DistContext, tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's rows (dim 0, sizes may differ) in rank order; tensors only, never pickles."""
    if not ctx.active:
        return tensor
    local = tensor.to(ctx.device)
    size = torch.tensor([local.shape[0]], device=ctx.device)
    sizes = [torch.zeros_like(size) for _ in range(ctx.world_size)]
    dist.all_gather(sizes, size)
    longest = int(max(s.item() for s in sizes))
    padded = torch.zeros((longest, *local.shape[1:]), dtype=local.dtype, device=ctx.device)
    padded[: local.shape[0]] = local
    parts = [torch.zeros_like(padded) for _ in range(ctx.world_size)]
    dist.all_gather(parts, padded)
    return torch.cat([p[: int(s.item())] for p, s in zip(parts, sizes)]).to(tensor.device)


__all__ = ["DistContext", "agreed", "all_reduce_sum", "barrier", "cleanup", "gather_rows", "setup"]
