"""How many CPU threads this process may use, so that processes sharing a machine do not fight over its cores.

PyTorch's default thread pool takes every core. Two such processes on one machine (two sweep shards, a sweep and a
notebook kernel, torchrun workers on CPU) oversubscribe the cores and OpenMP's spinning threads slow each other down
by up to 10×. The rule, first match wins:

1. an explicit ``--threads N`` (or ``threads=N``);
2. ``SLURM_CPUS_PER_TASK`` (the scheduler's share for this task);
3. ``OMP_NUM_THREADS`` (the user's own setting; torch already follows it);
4. ``n`` shards of one sweep (``--shard i/n``) or ``LOCAL_WORLD_SIZE`` processes of one node: an equal share of the
   cores each, at least one;
5. otherwise torch's default (every core).

The thread count is part of a run's numerics on CPU (reductions split differently), so it is recorded in every
``result.json``; the mini profile pins it (``experiments.Protocol.threads``) so its numbers do not depend on the
machine's core count.
"""
from __future__ import annotations

import os

import torch

ENV_VARS = ("SLURM_CPUS_PER_TASK", "OMP_NUM_THREADS")


def _positive(name: str, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{name}={text!r} is not allowed: use a positive integer") from None
    if value < 1:
        raise ValueError(f"{name}={value} is not allowed: use a positive integer")
    return value


def decide_threads(requested: int | None = None, shards: int = 1, cores: int | None = None) -> tuple[int | None, str]:
    """``(threads, why)`` by the module's rule; ``threads`` None means "leave torch's default"."""
    cores = cores or os.cpu_count() or 1
    if requested is not None:
        return _positive("threads", str(requested)), "requested"
    for name in ENV_VARS:
        if os.environ.get(name):
            return _positive(name, os.environ[name]), f"${name}"
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    sharing = max(int(shards), local)
    if sharing > 1:
        return max(1, cores // sharing), f"{sharing} processes share {cores} cores"
    return None, f"torch default ({torch.get_num_threads()} of {cores} cores)"


def apply_threads(requested: int | None = None, shards: int = 1) -> tuple[int, str]:
    """Size this process's intra-op thread pool by :func:`decide_threads`; returns ``(threads now, why)``."""
    threads, why = decide_threads(requested, shards)
    if threads is not None and threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    return torch.get_num_threads(), why


__all__ = ["ENV_VARS", "apply_threads", "decide_threads"]
