"""A user's own ImageFolder dataset, addressed by its path instead of a registry name.

Layout: ``<root>/train/<class>/*.jpg`` and optionally ``<root>/test/<class>/*.jpg`` (class folders are
matched by name, so a test folder may lack some classes). Without a test folder a fixed, stratified 20%
of the training images becomes the test split; validation is the usual seeded hold-out of the rest.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from PIL import Image
from torch.utils.data import Subset
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from .paper import FileListDataset, Source, assemble
from .registry import DatasetNotFoundError, DataSplits
from .splits import fixed_test_split, labels_of

FOLDER_TEST_FRACTION = 0.2


def _samples(directory: Path, class_to_idx: dict[str, int], allow_empty: bool) -> list[tuple[str, int]]:
    try:
        return make_dataset(str(directory), class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=allow_empty)
    except FileNotFoundError as e:
        raise DatasetNotFoundError(f"ImageFolder dataset {directory}: {e}") from e


_CONTENT: dict[tuple[str, int, int], str] = {}  # (path, size, mtime) -> SHA-256 of the file: each read once


def image_files(root: str | Path) -> list[tuple[str, str]]:
    """Every image file under ``root`` (by extension, as the dataset reads them), as (path relative to ``root`` with
    ``/``, full path), sorted by the relative path: one walk with ``os.walk``, which a run id of a large folder pays."""
    root = Path(root).resolve()
    found = []
    for dirpath, _, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root).replace(os.sep, "/")
        for name in filenames:
            if os.path.splitext(name)[1].lower() in IMG_EXTENSIONS:
                found.append((name if rel_dir == "." else f"{rel_dir}/{name}", os.path.join(dirpath, name)))
    return sorted(found)


def folder_digest(root: str | Path) -> str:
    """The images of a folder, as 16 hex digits: every image file's relative path and bytes (SHA-256). Adding,
    removing, renaming or overwriting an image changes it; a copy of the folder elsewhere keeps it. A file is read
    once per process (cached by path, size and mtime); later calls only list and stat (every run id of a folder
    dataset calls it)."""
    lines = []
    for rel, path in image_files(root):
        stat = os.stat(path)
        key = (path, stat.st_size, stat.st_mtime_ns)
        if key not in _CONTENT:
            with open(path, "rb") as handle:
                _CONTENT[key] = hashlib.file_digest(handle, "sha256").hexdigest()
        lines.append(f"{rel}\t{_CONTENT[key]}")
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def unreadable_images(root: str | Path) -> list[str]:
    """The image files under ``root`` whose header PIL cannot read, as paths relative to ``root``: a cheap check
    before training, which would otherwise stop at the first one mid-epoch."""
    broken = []
    for rel, path in image_files(root):
        try:
            with Image.open(path):
                pass
        except (OSError, SyntaxError, ValueError):  # UnidentifiedImageError is an OSError
            broken.append(rel)
    return broken


def split_name(root: Path) -> str:
    """Split-file name: folder name, a hash of the full path (two folders called 'data' do not collide) and of its
    images (a folder whose images changed draws new splits instead of refusing the old ones)."""
    return f"folder-{root.name}-{hashlib.sha1(str(root).encode()).hexdigest()[:8]}-{folder_digest(root)[:8]}"


def open_folder(root: Path) -> Source:
    if not root.is_dir():
        raise DatasetNotFoundError(f"ImageFolder dataset not found: {root} is not a directory. Expected "
                                   f"{root}/train/<class>/<image> (and optionally {root}/test/<class>/<image>).")
    train_dir = root / "train" if (root / "train").is_dir() else root
    try:
        classes, class_to_idx = find_classes(str(train_dir))
    except FileNotFoundError as e:
        raise DatasetNotFoundError(f"ImageFolder dataset {root}: no class folders in {train_dir}. Expected "
                                   f"{root}/train/<class>/<image>.") from e
    classes = [c for c in classes if not (train_dir == root and c == "test")]
    class_to_idx = {c: i for i, c in enumerate(classes)}
    if len(classes) < 2:
        raise ValueError(f"ImageFolder dataset {root}: found {len(classes)} class folder(s) in {train_dir}; need >= 2")
    train = FileListDataset(_samples(train_dir, class_to_idx, allow_empty=False), classes)
    where = {"root": str(root), "train_dir": str(train_dir)}
    test_dir = root / "test"
    if test_dir.is_dir():
        extra = sorted(e.name for e in test_dir.iterdir() if e.is_dir() and e.name not in class_to_idx)
        if extra:
            raise ValueError(f"ImageFolder dataset {root}: test classes {extra} have no training folder in {train_dir}")
        test = FileListDataset(_samples(test_dir, class_to_idx, allow_empty=True), classes)
        if len(test) == 0:
            raise DatasetNotFoundError(f"ImageFolder dataset {root}: {test_dir} holds no images")
        return Source(train, test, classes, {**where, "test_dir": str(test_dir)})
    pool, test_idx, path = fixed_test_split(split_name(root), labels_of(train), test_fraction=FOLDER_TEST_FRACTION)
    return Source(Subset(train, pool.tolist()), Subset(train, test_idx.tolist()), classes,
                  {**where, "test_dir": None}, str(path))


def build_folder(path: str | Path, *, profile: str, seed: int, cfg: dict, val_fraction: float,
                 limit: int | None) -> DataSplits:
    root = Path(path).expanduser().resolve()
    source = open_folder(root)
    return assemble(str(root), len(source.classes), source, kind="folder", profile=profile, seed=seed, cfg=cfg,
                    val_fraction=val_fraction, limit=limit, split_name=split_name(root))
