"""File-backed datasets of the paper protocol, read by torchvision's own loader classes.

Each builder checks the expected files first (so a missing dataset is one clear ``DatasetNotFoundError``
naming the path and the command, not a hang or a bare RuntimeError), downloads only when asked, then hands
parsing to torchvision. ``assemble`` turns (train source, test source) into ``DataSplits`` with the stored
validation hold-out and the paper's per-sample transforms.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torchvision
from torch.utils.data import ConcatDataset, Dataset, Subset
from torchvision.datasets.folder import default_loader

from . import device_path, jpeg_cache
from .registry import DATASETS, IN_MEMORY_SETS, JPEG_SETS, DatasetNotFoundError, DatasetSpec, DataSplits, not_found
from .splits import apply_limit, fixed_test_split, holdout_split, labels_of
from .transforms import describe, paper_transforms

IMAGENET_R_TEST_FRACTION = 0.1  # no official split: a fixed 10% test, then the usual 10% validation hold-out


class TransformedDataset(Dataset):
    """A view of ``base`` with its own transform, so train / eval views share one parsed dataset."""

    def __init__(self, base: Dataset, transform: Callable | None) -> None:
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int):
        image, label = self.base[index]
        return (self.transform(image) if self.transform is not None else image), int(label)


class FileListDataset(Dataset):
    """(path, label) samples read with torchvision's default image loader; labels kept as ``targets``."""

    def __init__(self, samples: list[tuple[str, int]], classes: list[str]) -> None:
        self.samples, self.classes = samples, classes
        self.targets = [label for _, label in samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        return default_loader(path), label


@dataclass
class Source:
    """Parsed train and test splits (no transforms), the class names and the files they came from."""

    train: Dataset
    test: Dataset
    classes: list[str]
    where: dict
    test_split_file: str | None = None


def how_to_get(spec: DatasetSpec, root: Path) -> str:
    return (f"{spec.download_command} --root {root}\n   (same as load_dataset(..., download=True) or "
            f"ADAPTERTUNE_DOWNLOAD=1); or fetch {spec.url} yourself and extract it so that {root / spec.folder} "
            "exists (see docs/data.md)")


REQUIRED: dict[str, tuple[str, ...]] = {
    "cifar10": tuple(f"cifar-10-batches-py/{f}" for f in
                     ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch",
                      "batches.meta"]),
    "cifar100": ("cifar-100-python/train", "cifar-100-python/test", "cifar-100-python/meta"),
    "svhn": ("svhn/train_32x32.mat", "svhn/test_32x32.mat"),
    "pets": ("oxford-iiit-pet/images", "oxford-iiit-pet/annotations/trainval.txt",
             "oxford-iiit-pet/annotations/test.txt"),
    "food101": ("food-101/images", "food-101/meta/train.json", "food-101/meta/test.json"),
    "flowers102": ("flowers-102/jpg", "flowers-102/imagelabels.mat", "flowers-102/setid.mat"),
    "aircraft": tuple(f"fgvc-aircraft-2013b/data/{f}" for f in
                      ["images", "variants.txt", "images_variant_trainval.txt", "images_variant_test.txt"]),
    "imagenet_r": ("imagenet-r",),
    "tiny_imagenet": ("tiny-imagenet-200/wnids.txt", "tiny-imagenet-200/train", "tiny-imagenet-200/val/images",
                      "tiny-imagenet-200/val/val_annotations.txt"),
}


def _download(name: str, root: Path) -> None:
    """torchvision's real download code (or its archive helper where torchvision has no class)."""
    tv = torchvision.datasets
    root.mkdir(parents=True, exist_ok=True)
    r = str(root)
    if name in ("cifar10", "cifar100"):
        cls = tv.CIFAR10 if name == "cifar10" else tv.CIFAR100
        cls(r, train=True, download=True), cls(r, train=False, download=True)
    elif name == "svhn":
        for split in ("train", "test"):
            tv.SVHN(str(root / "svhn"), split=split, download=True)
    elif name == "pets":
        tv.OxfordIIITPet(r, split="trainval", download=True)
    elif name == "food101":
        tv.Food101(r, split="train", download=True)
    elif name == "flowers102":
        tv.Flowers102(r, split="train", download=True)
    elif name == "aircraft":
        tv.FGVCAircraft(r, split="trainval", download=True)
    elif name in ("imagenet_r", "tiny_imagenet"):
        tv.utils.download_and_extract_archive(DATASETS[name].url, download_root=r)
    else:  # pragma: no cover - the registry and this table are kept in step by tests
        raise ValueError(f"no download rule for {name!r}")


def _check_files(spec: DatasetSpec, root: Path, download: bool) -> None:
    missing = [root / rel for rel in REQUIRED[spec.name] if not (root / rel).exists()]
    if missing and download:
        try:
            _download(spec.name, root)
        except Exception as e:  # network errors, bad archives: keep the user's next step in the message
            raise DatasetNotFoundError(f"downloading {spec.name!r} into {root} failed ({type(e).__name__}: {e}). "
                                       f"Fetch {spec.url} yourself and extract it so that {root / spec.folder} "
                                       "exists (see docs/data.md)") from e
        missing = [root / rel for rel in REQUIRED[spec.name] if not (root / rel).exists()]
    if missing:
        raise not_found(spec.name, root, missing, how_to_get(spec, root))


def _open(spec: DatasetSpec, root: Path, factory: Callable[[], Dataset]) -> Dataset:
    """torchvision raises a bare RuntimeError for missing or corrupted (md5) files: name the fix instead."""
    try:
        return factory()
    except RuntimeError as e:
        if "not found" not in str(e).lower() and "corrupted" not in str(e).lower():
            raise
        raise DatasetNotFoundError(
            f"dataset {spec.name!r}: the files under {root / spec.folder} are present but torchvision rejected "
            f"them ({e}): an incomplete copy or a different version (checksum mismatch). Delete the folder and "
            f"get it again: {how_to_get(spec, root)}") from e


def _words(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        wnid, _, names = line.partition("\t")
        out[wnid.strip()] = names.split(",")[0].strip()
    return out


def _pet_names(*splits: Dataset) -> list[str]:
    """Label-indexed breed names. torchvision lists only the breeds present, in label order, which misnames
    labels when a local copy lacks a breed; read each label's name off its image files instead."""
    names: dict[int, str] = {}
    for split in splits:
        for path, label in zip(split._images, split._labels):  # type: ignore[attr-defined]
            names.setdefault(int(label), " ".join(p.title() for p in Path(path).stem.rsplit("_", 1)[0].split("_")))
    return [names.get(i, f"class_{i}") for i in range(max(names) + 1)] if names else []


def open_source(spec: DatasetSpec, root: Path, download: bool) -> Source:
    """Parse the official splits of a registry dataset with torchvision (no transforms yet)."""
    _check_files(spec, root, download)
    tv, r, name = torchvision.datasets, str(root), spec.name
    where = {"root": str(root / spec.folder)}
    if name in ("cifar10", "cifar100"):
        cls = tv.CIFAR10 if name == "cifar10" else tv.CIFAR100
        train = _open(spec, root, lambda: cls(r, train=True))
        return Source(train, _open(spec, root, lambda: cls(r, train=False)), list(train.classes), where)
    if name == "svhn":
        s = str(root / "svhn")
        train = _open(spec, root, lambda: tv.SVHN(s, split="train"))
        return Source(train, _open(spec, root, lambda: tv.SVHN(s, split="test")), [str(i) for i in range(10)], where)
    if name == "pets":
        train = _open(spec, root, lambda: tv.OxfordIIITPet(r, split="trainval"))
        test = _open(spec, root, lambda: tv.OxfordIIITPet(r, split="test"))
        return Source(train, test, _pet_names(train, test), where)
    if name == "food101":
        train = _open(spec, root, lambda: tv.Food101(r, split="train"))
        return Source(train, _open(spec, root, lambda: tv.Food101(r, split="test")), list(train.classes), where)
    if name == "flowers102":  # official train + val (1,020 + 1,020) form the training split; test = official test
        parts = [_open(spec, root, lambda s=s: tv.Flowers102(r, split=s)) for s in ("train", "val")]
        test = _open(spec, root, lambda: tv.Flowers102(r, split="test"))
        return Source(ConcatDataset(parts), test, list(tv.Flowers102.classes), where)
    if name == "aircraft":
        train = _open(spec, root, lambda: tv.FGVCAircraft(r, split="trainval", annotation_level="variant"))
        test = _open(spec, root, lambda: tv.FGVCAircraft(r, split="test", annotation_level="variant"))
        return Source(train, test, list(train.classes), where)
    if name == "imagenet_r":
        folder = _open(spec, root, lambda: tv.ImageFolder(str(root / "imagenet-r")))
        pool, test, path = fixed_test_split(name, labels_of(folder), test_fraction=IMAGENET_R_TEST_FRACTION)
        return Source(Subset(folder, pool.tolist()), Subset(folder, test.tolist()), list(folder.classes), where,
                      str(path))
    if name == "tiny_imagenet":
        base = root / "tiny-imagenet-200"
        train = _open(spec, root, lambda: tv.ImageFolder(str(base / "train")))
        wnids = [w.strip() for w in (base / "wnids.txt").read_text().split() if w.strip()]
        unknown = sorted(set(train.classes) - set(wnids))
        if unknown:
            raise ValueError(f"tiny_imagenet: train folders {unknown[:5]} are not listed in {base / 'wnids.txt'}")
        test_samples = []
        for line in (base / "val" / "val_annotations.txt").read_text().splitlines():
            fields = line.split("\t")
            if len(fields) < 2:
                continue
            if fields[1] not in train.class_to_idx:
                raise ValueError(f"tiny_imagenet: val_annotations.txt names class {fields[1]!r} with no train folder")
            test_samples.append((str(base / "val" / "images" / fields[0]), train.class_to_idx[fields[1]]))
        words = _words(base / "words.txt")
        return Source(train, FileListDataset(test_samples, list(train.classes)),
                      [words.get(w, w) for w in train.classes], where)
    raise ValueError(f"{name!r} is not a paper dataset")  # pragma: no cover


def assemble(name: str, num_classes: int, source: Source, *, kind: str, profile: str, seed: int, cfg: dict,
             val_fraction: float, limit: int | None, split_name: str | None = None,
             device_augment: bool = False) -> DataSplits:
    """Stored hold-out + limit + the paper's per-sample transforms -> DataSplits (train_augment=None).

    ``device_augment``: the training split becomes one uint8 tensor cropped per batch on the device
    (:mod:`.device_path`, ``train_augment`` = the crop); evaluation splits keep the per-sample PIL transforms.
    """
    train_labels, test_labels = labels_of(source.train), labels_of(source.test)
    found = np.unique(np.concatenate([train_labels, test_labels]))
    if found.size and (found.min() < 0 or found.max() >= num_classes):
        raise ValueError(f"{name}: labels span {found.min()}..{found.max()}, outside 0..{num_classes - 1} "
                         f"(the dataset has {num_classes} classes)")
    if len(source.classes) > num_classes:
        raise ValueError(f"{name}: the files define {len(source.classes)} classes, the registry {num_classes}")
    if len(found) != num_classes:
        warnings.warn(f"{name}: found {len(found)} of its {num_classes} classes under {source.where['root']} "
                      f"(a partial copy?); the classifier keeps all {num_classes} outputs", stacklevel=3)
    class_names = list(source.classes) + [f"class_{i}" for i in range(len(source.classes), num_classes)]
    train_idx, val_idx, split_path = holdout_split(split_name or name, train_labels, seed=seed,
                                                   val_fraction=val_fraction)
    train_idx, val_idx, test_idx = apply_limit(train_idx, val_idx, train_labels, test_labels, limit)
    train_tf, eval_tf = paper_transforms(cfg)

    def view(base: Dataset, idx: np.ndarray, tf: Callable) -> TransformedDataset:
        return TransformedDataset(Subset(base, idx.tolist()), tf)

    test = view(source.test, test_idx, eval_tf) if limit else TransformedDataset(source.test, eval_tf)
    info = {
        "name": name, "kind": kind, "profile": profile, "root": source.where["root"], "source": source.where,
        "classes": class_names, "num_classes": num_classes, "classes_found": int(len(found)),
        "source_sizes": {"train": int(len(train_labels)), "test": int(len(test_labels))},
        "sizes": {"train": len(train_idx), "val": len(val_idx), "test": len(test_idx), "train_eval": len(train_idx)},
        "seed": seed, "val_fraction": val_fraction, "limit": limit, "split_file": str(split_path),
        "test_split_file": source.test_split_file, "data_config": cfg,
        "transform": {"train": describe(train_tf), "eval": describe(eval_tf)},
        "data_path": {"train": device_path.PIL_PATH, "eval": device_path.PIL_PATH,
                      "jpeg_cache": source.where.get("jpeg_cache")},
    }
    train: Dataset = view(source.train, train_idx, train_tf)
    augment = None
    if device_augment:
        train = device_path.in_memory_split(source.train, train_idx, cfg["input_size"][0])
        augment = device_path.device_crops(cfg)
        info["transform"]["train"] = describe(augment)
        info["data_path"]["train"] = device_path.TRAIN_PATH
    return DataSplits(name=name, train=train, val=view(source.train, val_idx, eval_tf), test=test,
                      train_eval=view(source.train, train_idx, eval_tf), num_classes=num_classes,
                      class_names=class_names, train_augment=augment, info=info)


def build_paper(name: str, *, profile: str, seed: int, cfg: dict, root: Path, val_fraction: float,
                limit: int | None, download: bool, device_augment: bool = False) -> DataSplits:
    """A registry dataset for the model: ``device_augment`` only for the in-memory sets (IN_MEMORY_SETS)."""
    spec = DATASETS[name]
    if device_augment and name not in IN_MEMORY_SETS:
        raise ValueError(f"device_augment=True is not allowed for {name!r}: only the in-memory sets {IN_MEMORY_SETS} "
                         "are held as one tensor")
    source = open_source(spec, root, download)
    if name in JPEG_SETS:  # read the pre-resized copy when prepare has written it (jpeg_cache)
        cache = jpeg_cache.use_cache(name, [source.train, source.test], root, cfg)
        source.where["jpeg_cache"] = None if cache is None else str(cache)
    return assemble(name, spec.num_classes, source, kind="paper", profile=profile, seed=seed, cfg=cfg,
                    val_fraction=val_fraction, limit=limit, device_augment=device_augment)


def write_jpeg_cache(name: str, root: Path, download: bool = False, say: Callable[[str], None] = print,
                     short_side: int = jpeg_cache.SHORT_SIDE) -> Path:
    """Write (or find) the pre-resized cache of a JPEG set's train and test images at ``short_side`` (the eval resize
    of the runs that will read it: ``jpeg_cache.eval_resize``)."""
    source = open_source(DATASETS[name], root, download)
    return jpeg_cache.build_cache(name, [source.train, source.test], root, short_side=short_side, say=say)
