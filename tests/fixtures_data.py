"""Tiny copies of each paper dataset in its REAL on-disk format, written at test time (no binaries committed).

The loaders under test are torchvision's own classes, so these writers follow the layouts those classes
parse. Fixtures hold few classes and few images; the registry keeps the real class count.

Integrity checks: CIFAR-10/100, SVHN and Flowers102 compare files against md5 sums stored as class
attributes of the torchvision class. ``md5_patches`` returns the (class attribute -> value) changes that
make those tables hold the fixture's own checksums, so the real check still runs (and still rejects a file
that is altered afterwards) and the real parsing code reads the files.
"""
from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import numpy as np
from PIL import Image


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _jpeg(path: Path, rng: np.random.Generator, size: tuple[int, int] = (40, 30), gray: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    if gray:
        Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8), "L").save(path, quality=90)
    else:
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB").save(path, quality=90)


def _labels(n: int, classes: int) -> list[int]:
    return [i % classes for i in range(n)]


# --- CIFAR ---------------------------------------------------------------------------------------------
def write_cifar10(root: Path, per_batch: int = 6, n_test: int = 8, classes: int = 4) -> dict:
    rng = np.random.default_rng(0)
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True, exist_ok=True)
    for name, n in [*[(f"data_batch_{i}", per_batch) for i in range(1, 6)], ("test_batch", n_test)]:
        entry = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": _labels(n, classes)}
        (base / name).write_bytes(pickle.dumps(entry, protocol=2))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (base / "batches.meta").write_bytes(pickle.dumps({"label_names": names}, protocol=2))
    return {"train": 5 * per_batch, "test": n_test, "classes": classes}


def write_cifar100(root: Path, n_train: int = 20, n_test: int = 10, classes: int = 5) -> dict:
    rng = np.random.default_rng(1)
    base = root / "cifar-100-python"
    base.mkdir(parents=True, exist_ok=True)
    for name, n in (("train", n_train), ("test", n_test)):
        entry = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "fine_labels": _labels(n, classes),
                 "coarse_labels": [0] * n}
        (base / name).write_bytes(pickle.dumps(entry, protocol=2))
    (base / "meta").write_bytes(pickle.dumps({"fine_label_names": [f"c{i}" for i in range(100)]}, protocol=2))
    return {"train": n_train, "test": n_test, "classes": classes}


# --- SVHN (MATLAB .mat, X: 32x32x3xN, y: Nx1 with 10 meaning digit 0) -------------------------------------
def write_svhn(root: Path, n_train: int = 20, n_test: int = 10) -> dict:
    from scipy.io import savemat

    rng = np.random.default_rng(2)
    base = root / "svhn"
    base.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        y = (np.arange(n) % 10 + 1).reshape(n, 1).astype(np.uint8)  # 1..10
        savemat(base / f"{split}_32x32.mat", {"X": rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8), "y": y})
    return {"train": n_train, "test": n_test, "classes": 10}


# --- Oxford-IIIT Pet ------------------------------------------------------------------------------------
PET_BREEDS = (("Abyssinian", 1, 1), ("american_bulldog", 2, 2), ("Bengal", 6, 1))  # name, class id, species


def write_pets(root: Path, per_class: tuple[int, int] = (4, 3)) -> dict:
    rng = np.random.default_rng(3)
    base = root / "oxford-iiit-pet"
    (base / "annotations").mkdir(parents=True, exist_ok=True)
    counter = {"trainval": 0, "test": 0}
    for split, k in zip(("trainval", "test"), per_class):
        lines = []
        for breed, cid, species in PET_BREEDS:
            for j in range(k):
                image_id = f"{breed}_{100 * (split == 'test') + j + 1}"
                _jpeg(base / "images" / f"{image_id}.jpg", rng, gray=(j == 0))
                lines.append(f"{image_id} {cid} {species} {j + 1}")
                counter[split] += 1
        (base / "annotations" / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return {"train": counter["trainval"], "test": counter["test"], "classes": len(PET_BREEDS),
            "max_label": max(c for _, c, _ in PET_BREEDS) - 1}


# --- Food-101 -------------------------------------------------------------------------------------------
def write_food101(root: Path, per_class: tuple[int, int] = (4, 2)) -> dict:
    rng = np.random.default_rng(4)
    base = root / "food-101"
    (base / "meta").mkdir(parents=True, exist_ok=True)
    dishes = ("apple_pie", "baby_back_ribs", "waffles")
    sizes = {}
    for split, k in zip(("train", "test"), per_class):
        meta = {}
        for d, dish in enumerate(dishes):
            rel = [f"{dish}/{1000 * (split == 'test') + 10 * d + j}" for j in range(k)]
            for r in rel:
                _jpeg(base / "images" / f"{r}.jpg", rng)
            meta[dish] = rel
        (base / "meta" / f"{split}.json").write_text(json.dumps(meta))
        sizes[split] = k * len(dishes)
    return {**sizes, "classes": len(dishes)}


# --- Flowers-102 (jpg/image_%05d.jpg, imagelabels.mat, setid.mat) -----------------------------------------
def write_flowers102(root: Path, n_images: int = 18) -> dict:
    from scipy.io import savemat

    rng = np.random.default_rng(5)
    base = root / "flowers-102"
    labels = np.array([1 + ((i // 3) % 3) * 40 for i in range(n_images)], dtype=np.uint8)  # 1, 41, 81 (1-based)
    for i in range(1, n_images + 1):
        _jpeg(base / "jpg" / f"image_{i:05d}.jpg", rng)
    savemat(base / "imagelabels.mat", {"labels": labels.reshape(1, -1)})
    ids = np.arange(1, n_images + 1)
    trn, val, tst = ids[0::3], ids[1::3], ids[2::3]
    savemat(base / "setid.mat", {"trnid": trn.reshape(1, -1), "valid": val.reshape(1, -1),
                                 "tstid": tst.reshape(1, -1)})
    return {"train": len(trn) + len(val), "test": len(tst), "classes": 3, "max_label": 80}


# --- FGVC-Aircraft (fgvc-aircraft-2013b/data/...) ------------------------------------------------------------
AIRCRAFT_VARIANTS = ("707-320", "A300B4", "Cessna 172")  # names may contain spaces; the loader splits once


def write_aircraft(root: Path, per_class: tuple[int, int] = (3, 2)) -> dict:
    rng = np.random.default_rng(6)
    data = root / "fgvc-aircraft-2013b" / "data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "variants.txt").write_text("\n".join(AIRCRAFT_VARIANTS) + "\n")
    counts = {}
    for split, k in zip(("trainval", "test"), per_class):
        lines = []
        for v, variant in enumerate(AIRCRAFT_VARIANTS):
            for j in range(k):
                image = f"{1000000 + 1000 * (split == 'test') + 10 * v + j:07d}"
                _jpeg(data / "images" / f"{image}.jpg", rng, size=(48, 36))
                lines.append(f"{image} {variant}")
        (data / f"images_variant_{split}.txt").write_text("\n".join(lines) + "\n")
        counts[split] = k * len(AIRCRAFT_VARIANTS)
    return {"train": counts["trainval"], "test": counts["test"], "classes": len(AIRCRAFT_VARIANTS)}


# --- ImageNet-R (imagenet-r/<wnid>/*.jpg, no official split) ---------------------------------------------
def write_imagenet_r(root: Path, per_class: int = 10) -> dict:
    rng = np.random.default_rng(7)
    wnids = ("n01443537", "n01484850", "n01494475")
    for wnid in wnids:
        for j in range(per_class):
            _jpeg(root / "imagenet-r" / wnid / f"art_{j}.jpg", rng)
    return {"total": per_class * len(wnids), "classes": len(wnids)}


# --- Tiny-ImageNet-200 -----------------------------------------------------------------------------------
def write_tiny_imagenet(root: Path, per_class: int = 4, val_per_class: int = 2) -> dict:
    rng = np.random.default_rng(8)
    base = root / "tiny-imagenet-200"
    wnids = ("n01443537", "n01629819", "n01641577")
    base.mkdir(parents=True, exist_ok=True)
    (base / "wnids.txt").write_text("\n".join(reversed(wnids)) + "\n")  # the real file is not sorted either
    (base / "words.txt").write_text("n01443537\tgoldfish, Carassius auratus\nn01629819\tEuropean fire salamander"
                                    "\nn01641577\tbullfrog, Rana catesbeiana\n")
    for wnid in wnids:
        boxes = []
        for j in range(per_class):
            _jpeg(base / "train" / wnid / "images" / f"{wnid}_{j}.JPEG", rng, size=(64, 64), gray=(j == 1))
            boxes.append(f"{wnid}_{j}.JPEG\t0\t0\t63\t63")
        (base / "train" / wnid / f"{wnid}_boxes.txt").write_text("\n".join(boxes) + "\n")
    lines, k = [], 0
    for wnid in wnids:
        for _ in range(val_per_class):
            _jpeg(base / "val" / "images" / f"val_{k}.JPEG", rng, size=(64, 64))
            lines.append(f"val_{k}.JPEG\t{wnid}\t1\t2\t60\t61")
            k += 1
    (base / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return {"train": per_class * len(wnids), "test": k, "classes": len(wnids)}


WRITERS = {"cifar10": write_cifar10, "cifar100": write_cifar100, "svhn": write_svhn, "pets": write_pets,
           "food101": write_food101, "flowers102": write_flowers102, "aircraft": write_aircraft,
           "imagenet_r": write_imagenet_r, "tiny_imagenet": write_tiny_imagenet}


def md5_patches(name: str, root: Path) -> list[tuple[object, str, object]]:
    """(torchvision class, attribute, value) triples that make the md5 tables hold the fixture's checksums."""
    import torchvision.datasets as tv

    if name == "cifar10":
        base, cls = root / "cifar-10-batches-py", tv.CIFAR10
    elif name == "cifar100":
        base, cls = root / "cifar-100-python", tv.CIFAR100
    elif name == "svhn":
        table = {k: [v[0], v[1], md5(root / "svhn" / v[1])] if k != "extra" else list(v)
                 for k, v in tv.SVHN.split_list.items()}
        return [(tv.SVHN, "split_list", table)]
    elif name == "flowers102":
        table = dict(tv.Flowers102._file_dict)
        for key in ("label", "setid"):
            table[key] = (table[key][0], md5(root / "flowers-102" / table[key][0]))
        return [(tv.Flowers102, "_file_dict", table)]
    else:
        return []
    return [(cls, "train_list", [[f, md5(base / f)] for f, _ in cls.train_list]),
            (cls, "test_list", [[f, md5(base / f)] for f, _ in cls.test_list]),
            (cls, "meta", {**cls.meta, "md5": md5(base / cls.meta["filename"])})]


def write_image_folder(root: Path, classes: tuple[str, ...] = ("cat", "dog", "fox"), per_class: int = 6,
                       test_per_class: int | None = None, test_classes: tuple[str, ...] | None = None) -> Path:
    """A user's ImageFolder dataset: root/train/<class>/*.jpg (+ root/test/<class>/*.png when asked)."""
    rng = np.random.default_rng(9)
    for c in classes:
        for j in range(per_class):
            _jpeg(root / "train" / c / f"{c}_{j}.jpg", rng, gray=(j == 0))
    if test_per_class:
        for c in test_classes or classes:
            for j in range(test_per_class):
                path = root / "test" / c / f"{c}_t{j}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(path)
    return root


PAPER_CFG = {"input_size": (3, 24, 24), "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "crop_pct": 0.875,
             "interpolation": "bicubic"}  # a small data config: the paper datasets' fixtures load in milliseconds


def write_patched(name: str, root: Path, monkeypatch) -> dict:
    """Write ``name``'s fixture under ``root`` and point torchvision's checksums at its files."""
    facts = WRITERS[name](root)
    for cls, attr, value in md5_patches(name, root):
        monkeypatch.setattr(cls, attr, value)
    return facts


def load_paper(name: str, root: Path, data_config: dict | None = None, **kw):
    """``load_dataset`` on a fixture with the paper profile (torchvision's partial-copy warning silenced)."""
    import warnings

    from adaptertune.data import load_dataset

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*partial copy.*")
        config = PAPER_CFG if data_config is None else data_config
        return load_dataset(name, profile="paper", root=root, data_config=config, **kw)
