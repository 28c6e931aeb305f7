"""What ``fit`` and ``advise`` accept as data: a registered dataset or a folder, and whether it can choose a rate.

Refused early, with the number needed: one class, a class with no validation image, too few validation images, an
image file that does not open; a bare name that is both a registered dataset and a folder here is ambiguous.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..backbones import mini_spec
from ..config import RunConfig
from ..data import DATASETS, load_for_run
from ..data.folder import FOLDER_TEST_FRACTION, unreadable_images
from ..data.splits import labels_of
from ..paths import looks_like_path

MIN_VAL_IMAGES = 20  # validation images needed to tell candidate rates apart (one image = 5 points at 20)


def dataset_name(data: str | Path) -> str:
    """A registry name as is; an existing folder as a path (``./name`` for a bare name, so it is read as a path)."""
    text = str(data)
    if text in DATASETS and Path(text).is_dir():
        raise ValueError(f"dataset {text!r} is both a registered dataset and a folder here: pass ./{text} for the "
                         f"folder, or run from elsewhere for the registered {text!r}")
    if text in DATASETS or looks_like_path(text):
        return text
    if Path(text).is_dir():
        return "./" + text
    raise ValueError(f"dataset {text!r} is neither a registered dataset ({sorted(DATASETS)}) nor a folder")


def default_profile(backbone: str) -> str:
    """The mini protocol's recipe and grids for the mini backbones, the paper's for every other backbone."""
    return "mini" if mini_spec(backbone) is not None else "paper"


def check_selectable(cfg: RunConfig) -> dict[str, int]:
    """Refuse data that cannot choose a rate: one class, classes missing from validation, too few validation images.
    Returns validation images per class."""
    if cfg.dataset not in DATASETS:
        broken = unreadable_images(cfg.dataset)
        if broken:
            raise ValueError(f"{cfg.dataset}: {len(broken)} image file(s) cannot be opened as images, e.g. "
                             f"{', '.join(broken[:3])}: remove or replace them")
    splits = load_for_run(cfg)
    names = list(splits.class_names)
    if splits.num_classes < 2:
        raise ValueError(f"{cfg.dataset}: {splits.num_classes} class; fit needs at least 2 classes")
    counts = np.bincount(labels_of(splits.val), minlength=splits.num_classes)
    train = np.bincount(labels_of(splits.train), minlength=splits.num_classes)
    need_train = math.ceil(MIN_VAL_IMAGES / cfg.val_fraction)
    if counts.sum() < MIN_VAL_IMAGES:
        held_out = splits.info.get("source", {}).get("test_dir", "") is None  # no test/: a fixed share went to test
        whole = (f"; a folder without test/ gives {FOLDER_TEST_FRACTION:.0%} of its images to the test split, so "
                 f"about {math.ceil(need_train / (1 - FOLDER_TEST_FRACTION))} images in all") if held_out else ""
        raise ValueError(f"{cfg.dataset}: {int(counts.sum())} validation image(s), too few to choose a learning rate: "
                         f"fit needs at least {MIN_VAL_IMAGES} (validation is val_fraction={cfg.val_fraction:g} of the "
                         f"training images, so at least {need_train} training images{whole}; the training split "
                         f"holds {int(train.sum() + counts.sum())}, after the test split and the profile's or "
                         "--limit's caps)")
    missing = [names[i] for i in np.flatnonzero(counts == 0)]
    if missing:
        raise ValueError(f"{cfg.dataset}: class(es) {missing} have no validation image (of {int(counts.sum())}): a "
                         "rate chosen without them says nothing about them; add images of these classes (about "
                         f"{math.ceil(1 / cfg.val_fraction)} per validation image) or raise val_fraction")
    return {names[i]: int(c) for i, c in enumerate(counts)}


__all__ = ["MIN_VAL_IMAGES", "check_selectable", "dataset_name", "default_profile"]
