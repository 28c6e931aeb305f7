"""Sweeps: many runs, each one cached in the run store, so a sweep can be killed and restarted at any
point, or split across array jobs, without coordination and without losing a finished run.

A sweep file (YAML) has a ``base`` config and a ``grid`` of lists whose Cartesian product is taken
(``grid`` may also be a list of such mappings: the union of several products). Duplicates (the same
``run_id``, e.g. head-only runs that differ only in an adapter field) are dropped.
"""
from __future__ import annotations

import hashlib
import itertools
import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from ..config import NON_SEMANTIC, RunConfig
from ..store import runs as run_store
from ..store.lock import RunLocked
from .prepare import prepare_inputs
from .run import cpu_refusal, train_or_fetch

SWEEP_KEYS = ("base", "grid")


def expand(spec: dict[str, Any]) -> list[RunConfig]:
    """``{"base": {...}, "grid": {key: [values]} | [{...}, ...]}`` -> configs in product order, deduplicated."""
    if not isinstance(spec, dict):
        raise ValueError(f"a sweep must be a mapping with keys {SWEEP_KEYS}, got {type(spec).__name__}")
    unknown = sorted(set(spec) - set(SWEEP_KEYS))
    if unknown:
        raise ValueError(f"unknown sweep key(s) {unknown}: allowed keys are {SWEEP_KEYS}")
    base = spec.get("base") or {}
    grids = spec.get("grid") or {}
    grids = [grids] if isinstance(grids, dict) else grids
    if not isinstance(base, dict) or not isinstance(grids, list) or not all(isinstance(g, dict) for g in grids):
        raise ValueError("sweep 'base' must be a mapping and 'grid' a mapping of lists (or a list of such mappings)")
    configs: list[RunConfig] = []
    for grid in grids:
        for key, values in grid.items():
            if not isinstance(values, list) or not values:
                raise ValueError(f"grid key {key!r} must map to a non-empty list of values, got {values!r}")
        keys = list(grid)
        for combo in itertools.product(*(grid[k] for k in keys)) if keys else [()]:
            configs.append(RunConfig.from_dict({**base, **dict(zip(keys, combo))}))
    return unique(configs)


def unique(configs: Iterable[RunConfig]) -> list[RunConfig]:
    seen: set[str] = set()
    out = []
    for cfg in configs:
        if cfg.run_id not in seen:
            seen.add(cfg.run_id)
            out.append(cfg)
    return out


def load_sweep(path: str | Path) -> list[RunConfig]:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sweep file {path} does not exist")
    return expand(yaml.safe_load(path.read_text()) or {})


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` with 0 <= i < n (0-based), as in ``--shard 0/4``."""
    try:
        i, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"shard={text!r} is not allowed: use 'i/n' with integers 0 <= i < n, e.g. '0/4'") from None
    return check_shard((i, n))


def check_shard(shard: tuple[int, int]) -> tuple[int, int]:
    i, n = shard
    if not (isinstance(i, int) and isinstance(n, int) and n >= 1 and 0 <= i < n):
        raise ValueError(f"shard={shard!r} is not allowed: use (i, n) with integers 0 <= i < n")
    return i, n


def shard_from_env() -> tuple[int, int] | None:
    """SLURM array jobs: index ``(SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN) / SLURM_ARRAY_TASK_STEP`` of
    ``SLURM_ARRAY_TASK_COUNT`` (``--array=0-15:4`` runs tasks 0, 4, 8, 12: shards 0-3 of 4)."""
    if "SLURM_ARRAY_TASK_ID" not in os.environ:
        return None
    if "SLURM_ARRAY_TASK_COUNT" not in os.environ:
        raise ValueError("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not; pass shard=(i, n) explicitly")
    task, count = int(os.environ["SLURM_ARRAY_TASK_ID"]), int(os.environ["SLURM_ARRAY_TASK_COUNT"])
    step = int(os.environ.get("SLURM_ARRAY_TASK_STEP", "1") or 1)
    return check_shard(((task - int(os.environ.get("SLURM_ARRAY_TASK_MIN", "0"))) // max(1, step), count))


def shard_of(run_id: str, n: int) -> int:
    """The shard (of ``n``) that owns a run: a stable hash of the run id alone, so a run keeps its shard when the list
    around it changes (the tuned grids grow between rounds; a position in a sorted list would move)."""
    return int.from_bytes(hashlib.sha256(run_id.encode()).digest()[:8], "big") % n


def select_shard(configs: list[RunConfig], shard: tuple[int, int] | None) -> list[RunConfig]:
    """Shard ``i`` of ``n``: the configs whose run id hashes to ``i`` (:func:`shard_of`), by run id, so independent
    jobs split a sweep disjointly however it grows. The per-run lock guards the rest (two processes
    given the same shard, or one without ``--shard``, skip a run the other is training)."""
    if shard is None:
        return list(configs)
    i, n = check_shard(tuple(shard))
    return sorted((c for c in unique(configs) if shard_of(c.run_id, n) == i), key=lambda c: c.run_id)


def _eta(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def with_settings(configs: Iterable[RunConfig], **settings: Any) -> list[RunConfig]:
    """The configs with the given non-semantic fields set (device, num_workers, compile, ...; None leaves a field as
    it is): how a shard process places its runs on its GPU without changing any run id."""
    bad = sorted(k for k in settings if k not in NON_SEMANTIC)
    if bad:
        raise ValueError(f"{bad} change what a run computes (its run id): only {NON_SEMANTIC} can be set per process")
    chosen = {k: v for k, v in settings.items() if v is not None}
    return [c.with_(**chosen) if chosen else c for c in configs]


def sweep(configs: Iterable[RunConfig | dict], shard: tuple[int, int] | None = None, root: str | Path | None = None,
          progress: bool = True, retry_failed: bool = False, dry_run: bool = False, verbose: bool = False,
          steal: bool = False) -> list[dict]:
    """Run every config not yet finished (this shard only); returns one ``{run_id, status, ...}`` per config.

    ``shard``: ``(i, n)``; default from ``SLURM_ARRAY_TASK_ID/COUNT`` when set. Finished runs are skipped;
    interrupted ones resume; failed ones are skipped unless ``retry_failed``; a run another process is training (its
    lock is held) is skipped with status ``locked``. A failing run is recorded and the sweep goes on; ``progress``
    prints ``run k/N`` with an ETA. The paper profile on a CPU it did not ask for is refused before any run starts,
    and its datasets and weights are fetched (or found missing) once first (:func:`~.prepare.prepare_inputs`).
    ``steal``: once its own shard is done, take the other shards' runs that no process holds, so shards of unequal
    length finish together (safe only where the per-run lock works: a local file system or one with ``flock``).
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError(f"sweep under a multi-process launcher (WORLD_SIZE={os.environ['WORLD_SIZE']}) is not "
                         "allowed: each rank would read the store and decide which runs to skip on its own. Start one "
                         "sweep process per GPU (--shard i/n --device cuda:i), or train one run across GPUs with "
                         "`torchrun -m adaptertune run`")
    every = unique(c if isinstance(c, RunConfig) else RunConfig.from_dict(c) for c in configs)
    shard = shard if shard is not None else shard_from_env()
    todo = select_shard(every, shard)
    if steal and shard is not None:
        own = {c.run_id for c in todo}
        # the others' runs from the far end of their lists: each owner works forward, so the two rarely meet
        todo += sorted((c for c in every if c.run_id not in own), key=lambda c: c.run_id, reverse=True)
    summary, durations = [], []
    skip = ("finished",) if retry_failed else ("finished", "failed")
    statuses = {c.run_id: run_store.run_status(c.run_id, root) for c in todo}
    pending = [] if dry_run else [c for c in todo if statuses[c.run_id] not in skip]
    if pending and not torch.cuda.is_available():
        first = pending[0]
        refusal = cpu_refusal(first, torch.device("cpu" if first.device in (None, "auto") else first.device))
        if refusal:
            raise ValueError(refusal)
    say = (lambda msg: print(msg, file=sys.stderr, flush=True)) if progress else (lambda msg: None)
    prepare_inputs(pending, say=say)  # paper profile: downloads once, before any shard trains
    scope = "in this shard, then the other shards' free ones" if steal and shard is not None else "in this shard"
    say(f"[sweep] {len(todo)} run(s) {scope}: {len(todo) - len(pending)} done or skipped, {len(pending)} to do")
    k = 0
    for cfg in todo:
        status = statuses[cfg.run_id]
        if steal and status not in skip:  # another shard may have taken it since: a settled run stays settled
            status = run_store.run_status(cfg.run_id, root)
        entry = {"run_id": cfg.run_id, "dataset": cfg.dataset, "backbone": cfg.backbone, "method": cfg.method,
                 "status_before": status}
        if status in skip or dry_run:
            summary.append({**entry, "status": status, "ran": False})
            continue
        k += 1
        eta = f", ETA {_eta(sum(durations) / len(durations) * (len(pending) - k + 1))}" if durations else ""
        say(f"[sweep] run {k}/{len(pending)} {cfg.run_id} {cfg.dataset}/{cfg.backbone}/{cfg.method}"
            + (f" r={cfg.rank}" if cfg.adapter_config() is not None else "") + f" seed={cfg.seed}"
            + (" (resuming)" if status == "running" else "") + eta)
        t0 = time.perf_counter()
        try:
            record, ran = train_or_fetch(cfg, root=root, progress=None if progress else False, verbose=verbose,
                                         retry_failed=retry_failed)
            summary.append({**entry, "status": record.get("status", "finished"), "ran": ran})
        except RunLocked as err:  # another process trains it: not ours to touch
            say(f"[sweep] {err}")
            summary.append({**entry, "status": "locked", "ran": False})
            continue
        except Exception as err:  # recorded in the run's result.json; the sweep goes on
            say(f"[sweep] run {cfg.run_id} failed: {type(err).__name__}: {err}")
            summary.append({**entry, "status": "failed", "ran": True, "error": f"{type(err).__name__}: {err}"})
        durations.append(time.perf_counter() - t0)
    failed = [s for s in summary if s["status"] == "failed"]
    locked = sum(s["status"] == "locked" for s in summary)
    say(f"[sweep] done: {sum(s['ran'] for s in summary)} trained, {len(failed)} failed, "
        + (f"{locked} skipped (locked by another process), " if locked else "") + f"{len(summary)} in shard")
    return summary


__all__ = ["expand", "load_sweep", "parse_shard", "select_shard", "shard_from_env", "shard_of", "sweep", "unique",
           "with_settings"]
