"""Everything a paper-profile sweep reads from the network, fetched once before any shard trains. Why: eight shard
processes started together would otherwise each download CIFAR-100 and the ViT weights into the same folders at once,
and a missing dataset would surface hours later as a failed run. ``prepare`` takes one blocking lock
(``<home>/data/.prepare/.lock``, writable even where the datasets are a read-only mount): the first process fetches,
the others wait for it and then find every file in place. It also writes each dataset's split files, so shards never
race to create them, and the pre-resized copy of each JPEG set (``data.jpeg_cache``) that the paper data path reads
instead of the full-size originals.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from functools import lru_cache

from ..backbones import create_backbone
from ..config import RunConfig
from ..data import DATASETS, backbone_data_config, datasets_root, load_dataset, resolve_data_config
from ..data.jpeg_cache import eval_resize
from ..data.paper import write_jpeg_cache
from ..data.registry import JPEG_SETS
from ..paths import data_dir
from ..store.lock import run_lock


@lru_cache(maxsize=None)
def _eval_side(backbone: str) -> int:
    """The shorter side a paper run on ``backbone`` resizes to for evaluation (its timm data config's crop_pct)."""
    return eval_resize(resolve_data_config(backbone_data_config(backbone, "paper"), "paper"))


def prepare_inputs(configs: Iterable[RunConfig], download: bool | None = None,
                   say: Callable[[str], None] = print) -> list[str]:
    """Fetch (``download=True``; None: ``$ADAPTERTUNE_DOWNLOAD``) or check every registry dataset and pretrained
    backbone the paper-profile ``configs`` use, under one lock that concurrent callers wait on. Returns what was
    prepared; a missing input is a :class:`~adaptertune.data.DatasetNotFoundError` (or timm's error) before any
    training. Mini and smoke configs need nothing here (their data is local, their backbones are pretrained here)."""
    paper = [c for c in configs if c.profile == "paper"]
    if not paper:
        return []
    done: list[str] = []
    # the lock lives in the project's own data folder: a shared, read-only datasets mount must not stop a sweep
    writable = os.access(datasets_root(), os.W_OK)
    with run_lock(data_dir() / ".prepare", wait=True):
        for name in sorted({c.dataset for c in paper if c.dataset in DATASETS}):
            for seed, hold_out in sorted({(c.seed, c.val_fraction) for c in paper if c.dataset == name}):
                # writes the split file once
                load_dataset(name, profile="paper", seed=seed, val_fraction=hold_out, download=download)
            done.append(f"dataset {name}")
            if name in JPEG_SETS and not writable:
                say(f"[prepare] {datasets_root()} is read-only: {name} is read from its original images")
            elif name in JPEG_SETS:  # the pre-resized copy the paper data path reads, at each run's eval resize
                for side in sorted({_eval_side(c.backbone) for c in paper if c.dataset == name}):
                    write_jpeg_cache(name, datasets_root(), say=say, short_side=side)
                    done.append(f"jpeg cache {name} ({side} px)")
        for backbone in sorted({c.backbone for c in paper if c.pretrained and c.checkpoint is None}):
            create_backbone(backbone, 1, pretrained=True, profile="paper")  # fills timm's hub cache
            done.append(f"backbone {backbone}")
    say(f"[prepare] ready: {', '.join(done) or 'nothing to fetch'}")
    return done


__all__ = ["prepare_inputs"]
