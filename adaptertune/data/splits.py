"""Deterministic, stored splits: the validation hold-out per seed and fixed test splits.

Indices come from ``numpy.random.default_rng(seed).permutation`` (never torch's global RNG) and are written
once as plain JSON under ``data/splits/``. Later runs read the file instead of recomputing, so a split stays
identical across machines and library versions; the file also records the source split's size and a
fingerprint of its labels, and any disagreement with the files on disk is an error, not a silent re-draw.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from torch.utils.data import ConcatDataset, Dataset, Subset

from ..atomic import atomic_write_bytes
from ..paths import splits_dir
from .registry import SplitFileError

FORMAT = "adaptertune-split/1"
FIXED_TEST_SEED = 0  # test subsets and test hold-outs do not depend on the run seed: every seed scores the same images


def labels_of(dataset: Dataset) -> np.ndarray:
    """The labels of a dataset without decoding any image (torchvision keeps them as attributes)."""
    if isinstance(dataset, Subset):
        return labels_of(dataset.dataset)[np.asarray(dataset.indices, dtype=np.int64)]
    if isinstance(dataset, ConcatDataset):
        return np.concatenate([labels_of(d) for d in dataset.datasets])
    tensors = getattr(dataset, "tensors", None)
    if tensors is not None:
        return tensors[1].numpy().astype(np.int64)
    for attr in ("targets", "labels", "_labels"):
        value = getattr(dataset, attr, None)
        if value is not None:
            return np.asarray(value, dtype=np.int64).reshape(-1)
    base = getattr(dataset, "base", None)
    if base is not None:
        return labels_of(base)
    raise TypeError(f"cannot read the labels of {type(dataset).__name__} without loading images "
                    "(no targets/labels/_labels attribute); this torchvision version may have renamed it")


def fingerprint(labels: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(labels, dtype=np.int64).tobytes()).hexdigest()[:16]


def stratified_first(order: np.ndarray, labels: np.ndarray, k: int | None = None,
                     per_class: int | None = None) -> np.ndarray:
    """The first ``k`` (or first ``per_class`` of every class) of ``order``, balanced across classes.

    Within-class rank decides, then position: a cap never empties a class while another keeps extras.
    The result keeps the order of ``order``.
    """
    order = np.asarray(order, dtype=np.int64)
    lab = labels[order]
    rank = np.zeros(len(order), dtype=np.int64)
    for c in np.unique(lab):
        where = np.flatnonzero(lab == c)
        rank[where] = np.arange(len(where))
    if per_class is not None:
        return order[rank < per_class]
    if k is None or k >= len(order):
        return order
    chosen = np.lexsort((np.arange(len(order)), rank))[:k]
    return order[np.sort(chosen)]


def cap(indices: np.ndarray, labels: np.ndarray, limit: int | None, shuffle_first: bool = False) -> np.ndarray:
    """Deterministic per-split cap for ``limit`` (stratified first-k). Official test splits are often sorted
    by class, so they are permuted with a fixed seed first (``shuffle_first``)."""
    if limit is None or limit >= len(indices):
        return np.asarray(indices, dtype=np.int64)
    order = np.asarray(indices, dtype=np.int64)
    if shuffle_first:
        order = order[np.random.default_rng(FIXED_TEST_SEED).permutation(len(order))]
    return stratified_first(order, labels, k=limit)


def apply_limit(train_idx: np.ndarray, val_idx: np.ndarray, train_labels: np.ndarray, test_labels: np.ndarray,
                limit: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``limit`` rule every profile shares: cap train and val, and the whole test split (permuted first)."""
    return (cap(train_idx, train_labels, limit), cap(val_idx, train_labels, limit),
            cap(np.arange(len(test_labels)), test_labels, limit, shuffle_first=True))


def _fmt(x: float) -> str:
    return f"{x:g}"


def _atomic_write_json(path: Path, payload: dict) -> None:
    atomic_write_bytes(path, json.dumps(payload, separators=(",", ":")).encode())


def _read_checked(path: Path, expect: dict, n: int, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Read a split file and check it against what the files on disk say; any doubt raises."""
    fix = f"Delete {path} to re-draw it from the current files (this changes the split)."
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise SplitFileError(f"split file {path} is unreadable or not JSON ({e}). {fix}") from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise SplitFileError(f"split file {path} is not an {FORMAT} file. {fix}")
    for key, want in expect.items():
        if payload.get(key) != want:
            raise SplitFileError(f"split file {path} records {key}={payload.get(key)!r} but the dataset on disk "
                                 f"gives {want!r}. {fix}")
    out: dict[str, np.ndarray] = {}
    seen = np.zeros(n, dtype=bool)
    for key in keys:
        values = payload.get(key)
        if not isinstance(values, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise SplitFileError(f"split file {path}: {key!r} must be a list of integers. {fix}")
        idx = np.asarray(values, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise SplitFileError(f"split file {path}: {key!r} has indices outside [0, {n}). {fix}")
        if seen[idx].any() or len(np.unique(idx)) != len(idx):
            raise SplitFileError(f"split file {path}: {key!r} repeats or overlaps indices. {fix}")
        seen[idx] = True
        out[key] = idx
    return out


def _stored(path: Path, expect: dict, n: int, keys: tuple[str, ...], compute) -> tuple[dict[str, np.ndarray], Path]:
    if path.exists():
        return _read_checked(path, expect, n, keys), path
    parts = compute()
    _atomic_write_json(path, {"format": FORMAT, **expect, **{k: parts[k].tolist() for k in keys}})
    return parts, path


def holdout_split(dataset: str, labels: np.ndarray, *, seed: int, val_fraction: float,
                  pool_cap: int | None = None, pool_per_class: int | None = None) -> tuple[np.ndarray, np.ndarray, Path]:
    """Train/val indices into the source split: a seeded permutation, optionally reduced to a class-balanced
    pool (``pool_cap`` images, or ``pool_per_class`` per class), whose first ``val_fraction`` is validation.

    The validation set is re-drawn per seed, as the authors' code does.
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed={seed!r} must be a non-negative integer")
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction={val_fraction!r} must be in [0, 1)")
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    if n < 2:
        raise ValueError(f"dataset {dataset!r}: the training split has {n} image(s); need at least 2")
    variant = f"-cap{pool_cap}" if pool_cap else f"-{pool_per_class}pc" if pool_per_class else ""
    path = splits_dir() / f"{_slug(dataset)}{variant}-seed{seed}-val{_fmt(val_fraction)}.json"
    expect = {"dataset": dataset, "kind": "val-holdout", "seed": seed, "val_fraction": val_fraction,
              "source_size": n, "labels_sha256": fingerprint(labels), "pool_cap": pool_cap,
              "pool_per_class": pool_per_class}

    def compute() -> dict[str, np.ndarray]:
        order = np.random.default_rng(seed).permutation(n)
        if pool_cap is not None or pool_per_class is not None:
            order = stratified_first(order, labels, k=pool_cap, per_class=pool_per_class)
        n_val = int(round(len(order) * val_fraction))
        if val_fraction > 0:
            n_val = min(max(n_val, 1), len(order) - 1)
        return {"val": order[:n_val], "train": order[n_val:]}

    parts, path = _stored(path, expect, n, ("train", "val"), compute)
    return parts["train"], parts["val"], path


def fixed_test_split(dataset: str, labels: np.ndarray, *, test_fraction: float) -> tuple[np.ndarray, np.ndarray, Path]:
    """(pool, test) indices for datasets without an official test split: stratified, seed-independent."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction={test_fraction!r} must be in (0, 1)")
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    path = splits_dir() / f"{_slug(dataset)}-test{_fmt(test_fraction)}.json"
    expect = {"dataset": dataset, "kind": "test-holdout", "seed": FIXED_TEST_SEED, "test_fraction": test_fraction,
              "source_size": n, "labels_sha256": fingerprint(labels)}

    def compute() -> dict[str, np.ndarray]:
        rng = np.random.default_rng(FIXED_TEST_SEED)
        test = []
        for c in np.unique(labels):
            members = np.flatnonzero(labels == c)
            members = members[rng.permutation(len(members))]
            k = int(round(len(members) * test_fraction)) if len(members) > 1 else 0
            test.append(members[:k])
        test_idx = np.sort(np.concatenate(test)) if test else np.zeros(0, dtype=np.int64)
        pool = np.setdiff1d(np.arange(n), test_idx)
        if len(test_idx) == 0 or len(pool) < 2:
            raise ValueError(f"dataset {dataset!r}: {n} images are too few for a {test_fraction:g} test hold-out")
        return {"pool": pool, "test": test_idx}

    parts, path = _stored(path, expect, n, ("pool", "test"), compute)
    return parts["pool"], parts["test"], path


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
