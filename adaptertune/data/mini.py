"""Offline, in-memory datasets for the mini and smoke profiles: real images, no internet.

Fashion-MNIST comes from the original idx files (Debian's ``dataset-fashion-mnist`` or torchvision's
download folder); the digits from scikit-learn. Everything is preloaded once as tensors so the training
loop indexes whole batches instead of calling ``__getitem__`` per image.
"""
from __future__ import annotations

import functools
import gzip
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import TensorDataset

from ..paths import data_dir
from .registry import DATASETS, MINI_SIZES, DataSplits, not_found
from .splits import apply_limit, fixed_test_split, holdout_split
from .transforms import BatchAugment, TensorPrep, describe

FMNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                  "Ankle boot")
DEBIAN_FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FMNIST_FILES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
                "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}
MATERIALISE_MAX_BYTES = 1 << 30  # above this the resized float copy is built per batch instead of once


class InMemoryDataset(TensorDataset):
    """(images, labels) tensors; ``prep`` (if any) turns stored images into model inputs, applied to whole
    batches by ``make_loader`` and per item by ``__getitem__``."""

    def __init__(self, images: Tensor, labels: Tensor, prep: TensorPrep | None = None) -> None:
        super().__init__(images, labels.long())
        self.prep = prep

    def __getitem__(self, index):  # type: ignore[override]
        x, y = self.tensors[0][index], self.tensors[1][index]
        if self.prep is not None:
            x = self.prep(x.unsqueeze(0))[0] if x.ndim == 3 else self.prep(x)
        return x, y


def fmnist_search_dirs(root: str | Path | None) -> list[Path]:
    if root is not None:
        root = Path(root).expanduser().resolve()
        return [root, root / "FashionMNIST" / "raw"]
    return [data_dir() / "datasets" / "FashionMNIST" / "raw", DEBIAN_FMNIST_DIR]


def _find(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def locate_fashion_mnist(root: str | Path | None = None, download: bool = False) -> dict[str, Path]:
    """The four idx files, from the first folder that has all of them."""
    dirs = fmnist_search_dirs(root)
    for directory in dirs:
        found = {k: _find(directory, stem) for k, stem in FMNIST_FILES.items()}
        if all(found.values()):
            return found  # type: ignore[return-value]
    if download:
        import torchvision

        parent = dirs[0].parent.parent if root is None else Path(root).expanduser().resolve()
        torchvision.datasets.FashionMNIST(str(parent), train=True, download=True)
        torchvision.datasets.FashionMNIST(str(parent), train=False, download=True)
        return locate_fashion_mnist(parent, download=False)
    looked = [d / f"{stem}[.gz]" for d in dirs for stem in FMNIST_FILES.values()]
    target = dirs[0].parent.parent
    raise not_found("Fashion-MNIST", dirs[0], looked,
                    "sudo apt-get install dataset-fashion-mnist   (puts the idx .gz files in "
                    f"{DEBIAN_FMNIST_DIR}), or with internet: python -m adaptertune.data download fmnist_target "
                    f"(torchvision's FashionMNIST download into {target}/FashionMNIST/raw)")


def read_idx(path: Path) -> np.ndarray:
    """Parse an idx file (plain or .gz): big-endian magic 0x0000TTNN, NN dims of uint32, then uint8 data."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path} is not an idx file (bad magic number)")
    dtype_code, ndim = raw[2], raw[3]
    if dtype_code != 0x08:
        raise ValueError(f"{path}: idx data type 0x{dtype_code:02x} is not unsigned byte (0x08)")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    offset, count = 4 + 4 * ndim, int(np.prod(shape))
    if len(raw) - offset != count:
        raise ValueError(f"{path}: header says {shape} ({count} bytes) but {len(raw) - offset} bytes follow")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(shape)


@functools.lru_cache(maxsize=4)
def _load_fmnist_cached(files: tuple[tuple[str, str], ...], stamp: tuple) -> dict[str, np.ndarray]:
    arrays = {k: read_idx(Path(p)) for k, p in files}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.shape != (images.shape[0],):
            raise ValueError(f"Fashion-MNIST {split}: images {images.shape} / labels {labels.shape} are not "
                             "(N, 28, 28) / (N,)")
        if labels.size and labels.max() > 9:
            raise ValueError(f"Fashion-MNIST {split}: label {labels.max()} outside 0..9")
    return arrays


def load_fashion_mnist(root: str | Path | None = None, download: bool = False) -> tuple[dict[str, np.ndarray], dict]:
    files = locate_fashion_mnist(root, download)
    stamp = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files.values())
    arrays = _load_fmnist_cached(tuple((k, str(p)) for k, p in sorted(files.items())), stamp)
    return arrays, {k: str(p) for k, p in files.items()}


@functools.lru_cache(maxsize=1)
def load_digits_28() -> tuple[Tensor, np.ndarray]:
    """scikit-learn's 1,797 8x8 digits (0..16) as 28x28 floats in [0, 1] (bilinear upsampling)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False).clamp_(0, 1)
    return x, np.asarray(d.target, dtype=np.int64)


def _tensor_split(images: Tensor, labels: np.ndarray, idx: np.ndarray, prep: TensorPrep) -> InMemoryDataset:
    """Preload one split; the normalised (resized) copy is made once unless it would be huge."""
    x, y = images[torch.as_tensor(idx)], torch.as_tensor(labels[idx])
    if prep.output_bytes(len(idx)) <= MATERIALISE_MAX_BYTES:
        return InMemoryDataset(prep(x).contiguous(), y)
    return InMemoryDataset(x, y, prep)


def build_mini(name: str, *, profile: str, seed: int, cfg: dict, root: str | Path | None, val_fraction: float,
               limit: int | None, download: bool) -> DataSplits:
    spec, sizes = DATASETS[name], MINI_SIZES[name]
    prep = TensorPrep(cfg)
    test_split_file = None
    if name == "digits":
        images, all_labels = load_digits_28()
        class_names = [str(i) for i in range(10)]
        pool, test_idx, test_path = fixed_test_split(name, all_labels, test_fraction=sizes["test_fraction"])
        train_images, train_labels = images[torch.as_tensor(pool)], all_labels[pool]
        test_images, test_labels = images[torch.as_tensor(test_idx)], all_labels[test_idx]
        source = {"sklearn": "sklearn.datasets.load_digits (8x8, 0..16, upsampled bilinearly to 28x28)"}
        test_split_file, hflip = str(test_path), False
    else:
        arrays, source = load_fashion_mnist(root, download)
        classes = sizes["classes"]
        remap = np.full(10, -1, dtype=np.int64)
        remap[list(classes)] = np.arange(len(classes))
        class_names = [FMNIST_CLASSES[c] for c in classes]

        def part(split: str) -> tuple[Tensor, np.ndarray]:
            lab = remap[arrays[f"{split}_labels"].astype(np.int64)]
            keep = np.flatnonzero(lab >= 0)
            return torch.from_numpy(arrays[f"{split}_images"][keep]).unsqueeze(1), lab[keep]

        (train_images, train_labels), (test_images, test_labels) = part("train"), part("test")
        if sizes.get("test_share"):  # a fixed, stratified share of the official test images (same for every seed)
            _, kept, test_path = fixed_test_split(f"fmnist-classes{''.join(map(str, classes))}", test_labels,
                                                  test_fraction=sizes["test_share"])
            test_images, test_labels = test_images[torch.as_tensor(kept)], test_labels[kept]
            test_split_file = str(test_path)
        hflip = True
    found = len(np.unique(np.concatenate([train_labels, test_labels])))
    if found != spec.num_classes:
        warnings.warn(f"{name}: found {found} of {spec.num_classes} classes in {source}", stacklevel=3)
    train_idx, val_idx, split_path = holdout_split(
        name, train_labels, seed=seed, val_fraction=val_fraction,
        pool_cap=sizes.get("pool_cap"), pool_per_class=sizes.get("pool_per_class"))
    train_idx, val_idx, test_idx = apply_limit(train_idx, val_idx, train_labels, test_labels, limit)
    train = _tensor_split(train_images, train_labels, train_idx, prep)
    augment = BatchAugment(hflip=hflip)
    info = {
        "name": name, "kind": "mini", "profile": profile, "source": source,
        "root": "sklearn" if name == "digits" else str(Path(source["train_images"]).parent),
        "classes": class_names, "num_classes": spec.num_classes, "classes_found": found,
        "source_sizes": {"train": int(len(train_labels)), "test": int(len(test_labels))},
        "sizes": {"train": len(train_idx), "val": len(val_idx), "test": len(test_idx), "train_eval": len(train_idx)},
        "seed": seed, "val_fraction": val_fraction, "limit": limit, "split_file": str(split_path),
        "test_split_file": test_split_file, "pool": {k: v for k, v in sizes.items() if k != "classes"},
        "data_config": cfg, "transform": {"eval": describe(prep), "train_augment": describe(augment)},
    }
    return DataSplits(name=name, train=train, val=_tensor_split(train_images, train_labels, val_idx, prep),
                      test=_tensor_split(test_images, test_labels, test_idx, prep), train_eval=train,
                      num_classes=spec.num_classes, class_names=class_names, train_augment=augment, info=info)
