"""Image transforms, all decided by the backbone's resolved data config.

Two families: per-sample torchvision transforms for file-backed (paper / ImageFolder) datasets, and
whole-tensor operations for in-memory (mini / smoke) datasets, where one vectorised call per batch replaces
thousands of per-image Python calls.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode

from .registry import check_profile

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
FMNIST_MEAN, FMNIST_STD = (0.2860,), (0.3530,)  # the mini backbones' normalisation (backbones.py)

DEFAULT_DATA_CONFIGS: dict[str, dict] = {
    "paper": {"input_size": (3, 224, 224), "mean": IMAGENET_MEAN, "std": IMAGENET_STD, "crop_pct": 0.875,
              "interpolation": "bicubic"},
    "mini": {"input_size": (1, 28, 28), "mean": FMNIST_MEAN, "std": FMNIST_STD, "crop_pct": 1.0,
             "interpolation": "bilinear"},
}
DEFAULT_DATA_CONFIGS["smoke"] = DEFAULT_DATA_CONFIGS["mini"]

INTERPOLATIONS = {"nearest": InterpolationMode.NEAREST, "bilinear": InterpolationMode.BILINEAR,
                  "bicubic": InterpolationMode.BICUBIC, "lanczos": InterpolationMode.LANCZOS,
                  "box": InterpolationMode.BOX, "hamming": InterpolationMode.HAMMING}
_TENSOR_MODES = {"nearest": "nearest", "bilinear": "bilinear", "bicubic": "bicubic"}


def resolve_data_config(data_config: dict | None, profile: str) -> dict:
    """Validate timm's data config (or take the profile default) and return a plain, JSON-able copy."""
    check_profile(profile)
    return check_data_config(DEFAULT_DATA_CONFIGS[profile] if data_config is None else data_config)


def check_data_config(data_config: dict) -> dict:
    """timm's resolved data config as a validated, JSON-able dict (mean/std widened to the input channels).

    The one normal form of an input config: the data loaders, adapter files and inference all compare this form.
    """
    if not isinstance(data_config, dict):
        raise ValueError(f"data_config={data_config!r} must be a dict like timm's resolved data config")
    cfg = dict(data_config)
    for key in ("input_size", "mean", "std"):
        if key not in cfg:
            raise ValueError(f"data_config lacks {key!r}: expected timm's resolved config with keys "
                             "input_size, mean, std (crop_pct, interpolation optional)")
    size = tuple(int(v) for v in cfg["input_size"])
    if len(size) != 3 or size[0] not in (1, 3) or min(size[1:]) < 1:
        raise ValueError(f"data_config input_size={cfg['input_size']!r} must be (C, H, W) with C in (1, 3)")
    channels = size[0]
    mean, std = tuple(float(v) for v in cfg["mean"]), tuple(float(v) for v in cfg["std"])
    if len(mean) != len(std) or len(mean) not in (1, channels):
        raise ValueError(f"data_config mean={mean} / std={std} do not match {channels} input channel(s)")
    if len(mean) == 1 and channels == 3:
        mean, std = mean * 3, std * 3
    if any(s <= 0 for s in std):
        raise ValueError(f"data_config std={std} must be positive")
    crop_pct = float(cfg.get("crop_pct") or 1.0)
    if not 0 < crop_pct <= 1:
        raise ValueError(f"data_config crop_pct={crop_pct} must be in (0, 1]")
    interpolation = str(cfg.get("interpolation") or "bilinear").lower()
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"data_config interpolation={interpolation!r} is not supported: use one of "
                         f"{sorted(INTERPOLATIONS)}")
    return {"input_size": list(size), "mean": list(mean), "std": list(std), "crop_pct": crop_pct,
            "interpolation": interpolation}


class ConvertMode:
    """PIL mode conversion (picklable, so DataLoader workers can use it): grayscale <-> RGB to match C."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def __call__(self, img: Image.Image) -> Image.Image:
        return img if img.mode == self.mode else img.convert(self.mode)

    def __repr__(self) -> str:
        return f"ConvertMode({self.mode!r})"


def paper_transforms(cfg: dict) -> tuple[T.Compose, T.Compose]:
    """The paper's per-sample transforms: RandomResizedCrop + flip for training, Resize + CenterCrop for eval.

    The resize before the centre crop is ``floor(H / crop_pct)`` (256 for 224 at 0.875), as timm does.
    """
    channels, height, width = cfg["input_size"]
    interp = INTERPOLATIONS[cfg["interpolation"]]
    mode = ConvertMode("RGB" if channels == 3 else "L")
    norm = T.Normalize(cfg["mean"], cfg["std"])
    if height == width:
        resize: int | tuple[int, int] = math.floor(height / cfg["crop_pct"])
    else:
        resize = (math.floor(height / cfg["crop_pct"]), math.floor(width / cfg["crop_pct"]))
    train = T.Compose([mode, T.RandomResizedCrop((height, width), interpolation=interp),
                       T.RandomHorizontalFlip(), T.ToTensor(), norm])
    evaluate = T.Compose([mode, T.Resize(resize, interpolation=interp), T.CenterCrop((height, width)),
                          T.ToTensor(), norm])
    return train, evaluate


class TensorPrep:
    """Turn in-memory images (N, c, h, w; uint8 0..255 or float 0..1) into normalised (N, C, H, W) floats.

    Whole-image resize (no centre crop: the mini images are already tightly framed 28x28 objects).
    """

    def __init__(self, cfg: dict) -> None:
        self.channels, self.height, self.width = cfg["input_size"]
        self.mode = _TENSOR_MODES.get(cfg["interpolation"], "bilinear")
        self.mean = torch.tensor(cfg["mean"][: self.channels]).view(1, -1, 1, 1)
        self.std = torch.tensor(cfg["std"][: self.channels]).view(1, -1, 1, 1)

    def __call__(self, x: Tensor) -> Tensor:
        if x.ndim != 4:
            raise ValueError(f"expected a (N, C, H, W) batch, got shape {tuple(x.shape)}")
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
        if x.shape[1] == 1 and self.channels == 3:
            x = x.expand(-1, 3, -1, -1)
        elif x.shape[1] == 3 and self.channels == 1:
            x = (x * torch.tensor([0.299, 0.587, 0.114], device=x.device).view(1, 3, 1, 1)).sum(1, keepdim=True)
        if tuple(x.shape[-2:]) != (self.height, self.width):
            down = self.height < x.shape[-2] or self.width < x.shape[-1]
            x = F.interpolate(x, size=(self.height, self.width), mode=self.mode,
                              antialias=down and self.mode != "nearest",
                              **({} if self.mode == "nearest" else {"align_corners": False})).clamp_(0, 1)
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

    def output_bytes(self, n: int) -> int:
        return 4 * n * self.channels * self.height * self.width

    def __repr__(self) -> str:
        return (f"TensorPrep(size=({self.channels}, {self.height}, {self.width}), mode={self.mode}, "
                f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()})")


@dataclass(frozen=True)
class BatchAugment:
    """Per-sample random-resized-crop (+ optional horizontal flip) on a whole batch in one grid_sample.

    Every random number comes from the generator passed in, a fixed 5 per image whatever the options,
    so a seeded generator gives the same batch bit for bit. ``hflip`` is off for digits: a mirrored
    digit is not the same digit (2, 3, 7 become glyphs that do not exist).
    """

    scale: tuple[float, float] = (0.6, 1.0)  # fraction of the image area kept
    ratio: tuple[float, float] = (0.8, 1.25)  # aspect-ratio jitter (log-uniform)
    hflip: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.scale[0] <= self.scale[1] <= 1:
            raise ValueError(f"BatchAugment.scale={self.scale} must satisfy 0 < lo <= hi <= 1")
        if not 0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(f"BatchAugment.ratio={self.ratio} must satisfy 0 < lo <= hi")

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if x.ndim != 4 or not x.is_floating_point():
            raise ValueError(f"train_augment expects a float (B, C, H, W) batch, got {x.dtype} {tuple(x.shape)}")
        b = x.shape[0]
        u = torch.rand(b, 5, generator=generator, dtype=torch.float64)
        area = self.scale[0] + (self.scale[1] - self.scale[0]) * u[:, 0]
        log_lo, log_hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        aspect = torch.exp(log_lo + (log_hi - log_lo) * u[:, 1])
        w = torch.sqrt(area * aspect).clamp(max=1.0)  # half-extent in normalised [-1, 1] coordinates
        h = torch.sqrt(area / aspect).clamp(max=1.0)
        cx, cy = (1 - w) * (2 * u[:, 2] - 1), (1 - h) * (2 * u[:, 3] - 1)
        flip = torch.where(u[:, 4] < 0.5, -1.0, 1.0) if self.hflip else torch.ones(b, dtype=torch.float64)
        theta = torch.zeros(b, 2, 3, dtype=torch.float64)
        theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = w * flip, cx, h, cy
        theta = theta.to(device=x.device, dtype=x.dtype)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def describe(transform: object) -> str:
    """A one-line description for provenance (``info['transform']``)."""
    if isinstance(transform, T.Compose):
        return " -> ".join(repr(t).replace("\n", " ") for t in transform.transforms)
    return repr(transform)
