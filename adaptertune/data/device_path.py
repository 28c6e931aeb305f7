"""The paper profile's in-memory training split: one uint8 tensor on the training device, cropped there per batch.

Why: the small sets (``registry.IN_MEMORY_SETS``: CIFAR-10/100, SVHN, Tiny-ImageNet) are most of the paper's images,
and a GPU fed by per-image PIL crops in CPU workers waits on them (``paper.plan`` models the rates). Here the
training images are read once from the parsed source into an (N, C, H, W) uint8 tensor, :class:`BatchLoader`'s
in-memory fast path gathers each batch from it in the loader's seeded order (no per-image Python), and
:class:`~adaptertune.data.device_augment.DeviceRandomResizedCrop` turns the batch into normalised 224-px images on
the device, with every random number drawn from the run's seeded CPU generator, so the same seed gives the same crops
on any device. The crop's resize is bilinear where the PIL path uses the backbone's (bicubic) interpolation: a
documented deviation of the device path (``device_augment``).

Evaluation (validation, test, train-eval) stays on the per-image PIL path (Resize + CenterCrop), so the evaluated
images are exactly those of the PIL path; the validation split is decoded in the first epoch only and replayed after
it, bit for bit (``val_replay``).
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from .device_augment import DeviceRandomResizedCrop
from .registry import DataSplits
from .splits import labels_of

TRAIN_PATH = "device: uint8 tensor, DeviceRandomResizedCrop per batch"
PIL_PATH = "per-image PIL transforms"


def _array_images(dataset: Dataset) -> np.ndarray | None:
    """The parsed uint8 array of a torchvision set that keeps one (CIFAR: N,H,W,C; SVHN: N,C,H,W) as N,C,H,W."""
    data = getattr(dataset, "data", None)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 4:
        return None
    if data.shape[1] in (1, 3) and data.shape[-1] not in (1, 3):
        return data  # SVHN: already channels first
    if data.shape[-1] in (1, 3):
        return data.transpose(0, 3, 1, 2)
    return None


def _decoded(dataset: Dataset, indices: np.ndarray, channels: int) -> np.ndarray:
    """Decode ``dataset[i]`` (a PIL image, no transform) for each index into one (N, C, H, W) uint8 array."""
    mode = "RGB" if channels == 3 else "L"
    out: np.ndarray | None = None
    for row, i in enumerate(indices.tolist()):
        image, _ = dataset[i]
        array = np.asarray(image.convert(mode), dtype=np.uint8)
        array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
        if out is None:
            out = np.empty((len(indices), *array.shape), dtype=np.uint8)
        elif array.shape != out.shape[1:]:
            raise ValueError(f"image {i} of the training split is {array.shape[2]}x{array.shape[1]}, the first one "
                             f"{out.shape[3]}x{out.shape[2]}: the in-memory path needs one size (set "
                             "augment_on_device=False to crop per image instead)")
        out[row] = array
    return out if out is not None else np.empty((0, channels, 1, 1), dtype=np.uint8)


def in_memory_split(dataset: Dataset, indices: np.ndarray, channels: int) -> TensorDataset:
    """``dataset[indices]`` as a TensorDataset of (N, C, H, W) uint8 images and int64 labels.

    Read straight from the parsed array where torchvision keeps one (CIFAR, SVHN), else decoded once (Tiny-ImageNet's
    64-px JPEGs). ``channels`` is the backbone's input channel count; a mismatch is an error, not a silent convert.
    """
    indices = np.asarray(indices, dtype=np.int64)
    labels = torch.as_tensor(labels_of(dataset)[indices], dtype=torch.int64)
    array = _array_images(dataset)
    images = array[indices] if array is not None else _decoded(dataset, indices, channels)
    if images.shape[1] != channels:
        raise ValueError(f"the training images have {images.shape[1]} channel(s), the backbone's data config "
                         f"{channels}: the in-memory path does not convert (set augment_on_device=False)")
    return TensorDataset(torch.from_numpy(np.ascontiguousarray(images)), labels)


def device_crops(cfg: dict) -> DeviceRandomResizedCrop:
    """RandomResizedCrop(224-px output, torchvision's scale and ratio) + flip + the backbone's normalisation."""
    _, height, width = cfg["input_size"]
    return DeviceRandomResizedCrop(size=(int(height), int(width)), mean=tuple(cfg["mean"]), std=tuple(cfg["std"]))


def place_on(splits: DataSplits, device: torch.device) -> DataSplits:
    """Move an in-memory training split (images and labels) onto ``device`` once, so every batch is gathered and
    cropped there; any other split is left as it is. Returns ``splits`` (changed in place)."""
    if isinstance(splits.train, TensorDataset) and isinstance(splits.train_augment, DeviceRandomResizedCrop):
        splits.train = TensorDataset(*(t.to(device) for t in splits.train.tensors))
    return splits


def uses_device_path(splits: DataSplits) -> bool:
    return isinstance(splits.train_augment, DeviceRandomResizedCrop)


__all__ = ["PIL_PATH", "TRAIN_PATH", "device_crops", "in_memory_split", "place_on", "uses_device_path"]
