"""Digests of a run's inputs, so a run id knows what it trained on and not only how.

A config names its backbone and dataset, but the same names can stand for other bytes: a mini backbone pretrained
again (on another CPU, or after a recipe change), a local checkpoint overwritten, a split definition changed in the
registry. ``RunConfig.run_id`` hashes these digests with the config, so such a change never reuses a cached run.

- backbone: the SHA-256 of the weights file for mini backbones and local checkpoints; the pinned hub tag for timm
  weights (the hub serves one file per tag); ``random`` for ``pretrained=False``. A mini weights file that does not
  exist yet (before ``pretrain-mini``) digests as ``missing:<name>``: ids computed then are provisional, and the
  sweep computes them again once the weights exist.
- split: everything that decides which images are train / val / test — the registry's sizes and pool caps, the
  split format and its fixed test seed (the seed, validation fraction and limit are config fields already). The
  stored split files carry the labels' fingerprint and refuse a changed dataset on load (``data.splits``). A user's
  ImageFolder digests its images' paths and bytes (``data.folder.folder_digest``): an image overwritten in place
  is a new input. A JPEG set adds the keys of its complete pre-resized caches (``data.jpeg_cache``): training
  crops from the cache's pixels once ``prepare`` has written it.
"""
from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path

from .backbones import mini_spec, mini_weights_path, resolve_name
from .data.folder import folder_digest
from .data.jpeg_cache import complete_caches
from .data.registry import DATASETS, JPEG_SETS, MINI_SIZES, datasets_root
from .data.splits import FIXED_TEST_SEED, FORMAT
from .paths import looks_like_path

# Bump when the split algorithm changes without a change of the registry's sizes (data/splits.py).
SPLIT_ALGORITHM = 1
DIGEST_CHARS = 16


def _short(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()[:DIGEST_CHARS]


@lru_cache(maxsize=256)
def _file_digest(path: str, mtime_ns: int, size: int) -> str:
    """A file's content digest, cached per (path, mtime, size) so planning hundreds of runs reads each file once."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:DIGEST_CHARS]


def file_digest(path: str | Path) -> str:
    """SHA-256 (16 hex digits) of a file's bytes."""
    stat = os.stat(path)
    return _file_digest(str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size)


def backbone_digest(backbone: str, pretrained: bool, checkpoint: str | None, profile: str) -> str:
    """What the run's starting weights are, as a short string (see the module docstring)."""
    if checkpoint is not None:
        path = Path(checkpoint)
        return f"file:{file_digest(path)}" if path.is_file() else f"missing:{path.name}"
    if not pretrained:
        return "random"
    if mini_spec(backbone) is not None:
        path = mini_weights_path(backbone, profile)
        return f"mini:{file_digest(path)}" if path.is_file() else f"missing:{backbone}"
    return f"timm:{resolve_name(backbone)}"


def split_digest(dataset: str) -> str:
    """What decides the dataset's splits beyond the config's seed, validation fraction and limit."""
    if dataset in DATASETS:
        spec = DATASETS[dataset]
        definition = {"dataset": dataset, "kind": spec.kind, "train_size": spec.train_size, "test_size": spec.test_size,
                      "sizes": MINI_SIZES.get(dataset), "format": FORMAT, "test_seed": FIXED_TEST_SEED,
                      "algorithm": SPLIT_ALGORITHM}
        if dataset in JPEG_SETS:  # which pixels it reads: the pre-resized caches that exist (data.jpeg_cache)
            definition["jpeg_caches"] = list(complete_caches(dataset, datasets_root()))
        return _short(json.dumps(definition, sort_keys=True, default=list).encode())
    root = Path(dataset)
    if looks_like_path(dataset) and root.is_dir():
        return f"folder:{folder_digest(root)}"
    return f"missing:{Path(dataset).name}"


def input_digests(backbone: str, pretrained: bool, checkpoint: str | None, profile: str,
                  dataset: str) -> dict[str, str]:
    """``{"backbone": ..., "split": ...}`` for one run (hashed into its run id and written into its result)."""
    return {"backbone": backbone_digest(backbone, pretrained, checkpoint, profile), "split": split_digest(dataset)}


__all__ = ["SPLIT_ALGORITHM", "backbone_digest", "file_digest", "input_digests", "split_digest"]
