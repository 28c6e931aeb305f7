"""A dataset split written out as an ImageFolder tree of PNG files: images to try ``predict`` on.

Each image is the split's evaluation input with the normalisation undone and rounded to 8 bits, so for the
Fashion-MNIST tasks (8-bit 28x28 originals) the files hold exactly the test images the runs were scored on.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..atomic import atomic_write
from .registry import DataSplits


def folder_name(class_name: str) -> str:
    """A class name as a folder name (``/`` is not allowed in one); ``inference.score`` matches it back."""
    return class_name.replace("/", "_")


def export_split(splits: DataSplits, out: str | Path, split: str = "test", per_class: int | None = None) -> list[Path]:
    """Write ``<out>/<class>/<split>_<index>.png`` for the first ``per_class`` images of each class (all if None)."""
    if split not in ("train", "val", "test", "train_eval"):
        raise ValueError(f"split={split!r} is not allowed: choose train, val, test or train_eval")
    if per_class is not None and (isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1):
        raise ValueError(f"per_class={per_class!r} must be None or a positive integer")
    cfg = splits.info["data_config"]
    mean = torch.tensor(cfg["mean"]).view(-1, 1, 1)
    std = torch.tensor(cfg["std"]).view(-1, 1, 1)
    dataset = getattr(splits, split)
    counts: dict[int, int] = {}
    written = []
    for index in range(len(dataset)):
        x, y = dataset[index]
        label = int(y)
        if per_class is not None and counts.get(label, 0) >= per_class:
            continue
        counts[label] = counts.get(label, 0) + 1
        pixels = ((x * std[: x.shape[0]] + mean[: x.shape[0]]) * 255).round().clamp(0, 255).to(torch.uint8)
        array = pixels[0].numpy() if pixels.shape[0] == 1 else np.ascontiguousarray(pixels.permute(1, 2, 0).numpy())
        path = Path(out) / folder_name(splits.class_names[label]) / f"{split}_{index:05d}.png"
        written.append(atomic_write(path, lambda tmp, a=array: Image.fromarray(a).save(tmp, format="PNG")))
    return written


__all__ = ["export_split", "folder_name"]
