"""How many CPU threads this process may use, so that processes sharing a machine do not fight over its cores.

PyTorch's default thread pool takes every core. Two such processes on one machine (two sweep shards, a sweep and a
notebook kernel, torchrun workers on CPU) oversubscribe the cores and OpenMP's spinning threads slow each other down
by up to 10×. The rule, first match wins:

1. an explicit ``--threads N`` (or ``threads=N``);
2. ``SLURM_CPUS_PER_TASK`` (the scheduler's share for this task), split equally between the processes that share it
   (torchrun's ``LOCAL_WORLD_SIZE``, or ``n`` shards started by hand with ``--shard i/n``);
3. ``OMP_NUM_THREADS`` (the user's own per-process setting; torch already follows it);
4. ``n`` shards of one sweep (``--shard i/n``) or ``LOCAL_WORLD_SIZE`` processes of one node: an equal share of the
   cores this process may run on (its CPU affinity, which a cgroup or ``taskset`` narrows), at least one;
5. otherwise torch's default (every core).

A SLURM array's tasks are separate allocations: its task count is not a count of processes sharing this machine, so
only an explicit ``--shard`` counts as sharing.

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
    cores = cores or available_cores()
    if requested is not None:
        return _positive("threads", str(requested)), "requested"
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    sharing = max(int(shards), local)
    if os.environ.get("SLURM_CPUS_PER_TASK"):
        share = _positive("SLURM_CPUS_PER_TASK", os.environ["SLURM_CPUS_PER_TASK"])
        return (max(1, share // sharing), f"$SLURM_CPUS_PER_TASK / {sharing} processes") if sharing > 1 else \
            (share, "$SLURM_CPUS_PER_TASK")
    if os.environ.get("OMP_NUM_THREADS"):
        return _positive("OMP_NUM_THREADS", os.environ["OMP_NUM_THREADS"]), "$OMP_NUM_THREADS"
    if sharing > 1:
        return max(1, cores // sharing), f"{sharing} processes share {cores} cores"
    return None, f"torch default ({torch.get_num_threads()} of {cores} cores)"


def available_cores() -> int:
    """The cores this process may run on: its CPU affinity where the OS reports one, else every core."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def apply_threads(requested: int | None = None, shards: int = 1) -> tuple[int, str]:
    """Size this process's intra-op thread pool by :func:`decide_threads`; returns ``(threads now, why)``."""
    threads, why = decide_threads(requested, shards)
    if threads is not None and threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    return torch.get_num_threads(), why


__all__ = ["ENV_VARS", "apply_threads", "available_cores", "decide_threads"]
