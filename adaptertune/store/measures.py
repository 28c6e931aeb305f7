"""Measurements that are not runs, kept in the store so a notebook pass never computes one twice.

A notebook's analyses are pure functions of the runs, except a few measurements of their own: the linear probe of a
backbone's source accuracy, say, costs a minute per pass although its inputs never change between passes. Such a
measurement is named by a ``key`` (a JSON dict of everything it depends on: the weights' digest, the split's, the
sample sizes, the seed and a version of the method) and stored once under ``<store>/measures/<kind>/<digest>.json``.
A changed input is a changed key, hence a new measurement; two processes computing the same one write the same value
(atomically), so neither can read a torn file.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ..atomic import atomic_write_bytes
from .runs import store_root

T = TypeVar("T")
MEASURES_DIR = "measures"


def measure_path(kind: str, key: dict, root: str | Path | None = None) -> Path:
    if not kind.isidentifier():
        raise ValueError(f"measure kind {kind!r} must be an identifier (it names a folder)")
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return store_root(root) / MEASURES_DIR / kind / f"{digest}.json"


def cached_measure(kind: str, key: dict, compute: Callable[[], T], root: str | Path | None = None) -> T:
    """``compute()`` once per ``key``: later calls read the stored value (JSON round-trips a float exactly)."""
    path = measure_path(kind, key, root)
    if path.is_file():
        stored = json.loads(path.read_text())
        if stored.get("key") == key:  # a digest collision, however unlikely, recomputes rather than lies
            return stored["value"]
    t0 = time.perf_counter()
    value = compute()
    record = {"kind": kind, "key": key, "value": value, "seconds": round(time.perf_counter() - t0, 3)}
    atomic_write_bytes(path, (json.dumps(record, indent=1, sort_keys=True) + "\n").encode())
    return value


__all__ = ["MEASURES_DIR", "cached_measure", "measure_path"]
