"""Datasets for every profile behind one call: ``load_dataset(name, profile=..., data_config=...)``.

- paper datasets (CIFAR-10/100, SVHN, Pets, Food101, Flowers102, FGVC-Aircraft, ImageNet-R, Tiny-ImageNet)
  are read by torchvision's loaders with per-sample transforms;
- mini datasets (Fashion-MNIST halves, scikit-learn digits) are real images preloaded as tensors, with a
  batch-level augmentation (``DataSplits.train_augment``);
- any path is a user's ImageFolder dataset.

The backbone's data config decides size, channels and normalisation, so one dataset serves any backbone.
See docs/data.md for where the files go.
"""
from __future__ import annotations

from pathlib import Path

from ..backbones import create_backbone, data_config
from ..config import RunConfig
from ..paths import looks_like_path
from .folder import build_folder
from .loader import make_loader
from .mini import build_mini
from .paper import build_paper
from .registry import (DATASETS, DOWNLOAD_ENV, IN_MEMORY_SETS, PROFILES, DatasetNotFoundError, DatasetSpec, DataSplits,
                       SplitFileError, check_name, check_profile, datasets_root, want_download)
from .transforms import DEFAULT_DATA_CONFIGS, BatchAugment, resolve_data_config


def load_dataset(name: str, *, profile: str = "mini", seed: int = 0, data_config: dict | None = None,
                 root: str | Path | None = None, val_fraction: float = 0.1, limit: int | None = None,
                 download: bool | None = None, augment_on_device: bool = False) -> DataSplits:
    """Train / val / test / train_eval splits of ``name`` (registry key or ImageFolder path), ready for the model.

    ``data_config`` is timm's resolved config of the backbone (None: the profile default). ``seed`` draws the
    validation hold-out (stored under data/splits/). ``limit`` caps every split (class-balanced, deterministic).
    ``download`` (default: ``$ADAPTERTUNE_DOWNLOAD``, off) lets torchvision fetch missing paper datasets.
    ``augment_on_device``: hold a paper in-memory set's training split as one uint8 tensor cropped per batch by
    ``DataSplits.train_augment`` (``data.device_path``); False keeps the per-image PIL crops.
    """
    check_profile(profile)
    if not isinstance(name, str) or not name:
        raise ValueError(f"dataset name {name!r} must be a non-empty string: one of {sorted(DATASETS)} or a path")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed={seed!r} must be a non-negative integer")
    if not isinstance(augment_on_device, bool):
        raise ValueError(f"augment_on_device={augment_on_device!r} must be True or False")
    if augment_on_device and (profile != "paper" or name not in IN_MEMORY_SETS):
        raise ValueError(f"augment_on_device=True is not allowed for {name!r} in profile {profile!r}: it is for the "
                         f"paper profile's in-memory sets {IN_MEMORY_SETS}")
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction={val_fraction!r} must be a number in [0, 1)")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise ValueError(f"limit={limit!r} must be None or a positive integer")
    cfg = resolve_data_config(data_config, profile)
    fetch = want_download(download)
    val_fraction = float(val_fraction)
    if name not in DATASETS:
        if not looks_like_path(name):
            check_name(name)  # raises ValueError listing the allowed names
        return build_folder(name, profile=profile, seed=seed, cfg=cfg, val_fraction=val_fraction, limit=limit)
    spec = DATASETS[name]
    if spec.kind == "mini":
        return build_mini(name, profile=profile, seed=seed, cfg=cfg, root=root, val_fraction=val_fraction,
                          limit=limit, download=fetch)
    return build_paper(name, profile=profile, seed=seed, cfg=cfg, root=datasets_root(root),
                       val_fraction=val_fraction, limit=limit, download=fetch, device_augment=augment_on_device)


def backbone_data_config(backbone: str, profile: str) -> dict:
    """The backbone's own timm data config (input size, crop_pct, mean, std), read off a random-init copy: what the
    data path sizes and normalises a run's images by (``load_dataset`` resolves it for the profile)."""
    return data_config(create_backbone(backbone, 1, pretrained=False, profile=profile))


def load_for_run(cfg: RunConfig) -> DataSplits:
    """The splits one run trains and is scored on, sized and normalised by its backbone's own data config.

    The one place a run's config becomes data: training, the theory notebook and the failure analysis all read
    exactly the images the run saw (same seed, hold-out and limit).
    """
    return load_dataset(cfg.dataset, profile=cfg.profile, seed=cfg.seed,
                        data_config=backbone_data_config(cfg.backbone, cfg.profile),
                        val_fraction=cfg.val_fraction, limit=cfg.limit,
                        augment_on_device=bool(cfg.resolved().augment_on_device))


__all__ = ["DATASETS", "DEFAULT_DATA_CONFIGS", "DOWNLOAD_ENV", "PROFILES", "BatchAugment", "DataSplits", "backbone_data_config",
           "DatasetNotFoundError", "DatasetSpec", "SplitFileError", "datasets_root", "load_dataset", "load_for_run", "make_loader",
           "resolve_data_config"]
