"""torchvision's RandomResizedCrop + RandomHorizontalFlip + Normalize for a whole uint8 batch on the device.

Why: the paper's small sets (CIFAR-10/100, SVHN, Tiny-ImageNet; most of the paper's images) fit on a GPU as uint8, and
cropping them one PIL image at a time in CPU workers would starve it. The crop parameters follow
``torchvision.transforms.RandomResizedCrop.get_params`` draw for draw in distribution (10 tries of area ~ U(scale) and
log-aspect ~ U(log ratio), integer sizes by rounding, a uniform integer offset, the same centre-crop fallback), so the
augmentation distribution is the PIL path's; one ``roi_align`` call then resizes every crop to the output size
(bilinear at pixel centres, averaging several samples per output pixel when a crop is larger than the output, like
an antialiased resize). ``tests/test_device_augment.py`` compares both paths statistically.

Wired into the paper profile by ``data.device_path``: an augmented paper run on an in-memory set
(``RunConfig.augment_on_device``, on by default there) holds its training split as one uint8 tensor on the device and
crops each batch with this class; ``paper.plan`` counts it in the "now" column. One documented deviation from the
PIL path: the resize inside the crop is bilinear (``roi_align``), where PIL uses the backbone's interpolation
(bicubic for the paper's ViTs).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.ops import roi_align

TRIES = 10  # torchvision's attempts before the centre-crop fallback


@dataclass(frozen=True)
class DeviceRandomResizedCrop:
    """Batched random-resized crop (+ flip) of uint8 (N, C, H, W) images to normalised floats (N, C, *size)."""

    size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    scale: tuple[float, float] = (0.08, 1.0)  # torchvision's defaults, as paper_transforms uses them
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.scale[0] <= self.scale[1]:
            raise ValueError(f"scale={self.scale} is not allowed: use 0 < lo <= hi")
        if not 0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(f"ratio={self.ratio} is not allowed: use 0 < lo <= hi")
        if len(self.mean) != len(self.std) or any(s <= 0 for s in self.std):
            raise ValueError(f"mean={self.mean} / std={self.std} must have one positive std per mean")

    def params(self, n: int, height: int, width: int, generator: torch.Generator | None = None,
               ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """(i, j, h, w, flip) per image, int64 / bool on the generator's device: RandomResizedCrop's distribution."""
        device = generator.device if generator is not None else torch.device("cpu")
        u = torch.rand(n, TRIES, 4, generator=generator, device=device, dtype=torch.float64)
        area = height * width * (self.scale[0] + (self.scale[1] - self.scale[0]) * u[..., 0])
        lo, hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        aspect = torch.exp(lo + (hi - lo) * u[..., 1])
        w = torch.round(torch.sqrt(area * aspect)).long()  # round half to even, as Python's round
        h = torch.round(torch.sqrt(area / aspect)).long()
        ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
        first = torch.where(ok.any(1), ok.long().argmax(1), torch.full((n,), -1, device=device))
        pick = first.clamp(min=0).unsqueeze(1)
        h, w = h.gather(1, pick).squeeze(1), w.gather(1, pick).squeeze(1)
        ui, uj = u[..., 2].gather(1, pick).squeeze(1), u[..., 3].gather(1, pick).squeeze(1)
        i = torch.floor(ui * (height - h + 1).double()).long().clamp(max=height - 1)
        j = torch.floor(uj * (width - w + 1).double()).long().clamp(max=width - 1)
        fh, fw = _centre_fallback(height, width, self.ratio)
        fallback = first < 0
        h, w = torch.where(fallback, fh, h), torch.where(fallback, fw, w)
        i = torch.where(fallback, (height - fh) // 2, i)
        j = torch.where(fallback, (width - fw) // 2, j)
        flip = torch.rand(n, generator=generator, device=device) < 0.5 if self.hflip else \
            torch.zeros(n, dtype=torch.bool, device=device)
        return i, j, h, w, flip

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if images.ndim != 4 or images.dtype != torch.uint8:
            raise ValueError(f"expects a uint8 (N, C, H, W) batch, got {images.dtype} {tuple(images.shape)}")
        n, channels, height, width = images.shape
        i, j, h, w, flip = (t.to(images.device) for t in self.params(n, height, width, generator))
        boxes = torch.stack([torch.arange(n, device=images.device), j, i, j + w, i + h], 1).float()
        out = roi_align(images.float(), boxes, output_size=self.size, spatial_scale=1.0, sampling_ratio=-1,
                        aligned=True)
        out = torch.where(flip.view(-1, 1, 1, 1), out.flip(-1), out)
        mean = torch.tensor(self.mean, device=out.device).view(1, -1, 1, 1)[:, :channels]
        std = torch.tensor(self.std, device=out.device).view(1, -1, 1, 1)[:, :channels]
        return (out / 255.0 - mean) / std


def _centre_fallback(height: int, width: int, ratio: tuple[float, float]) -> tuple[int, int]:
    """torchvision's fallback crop (h, w) when no try fits: the whole image, clamped to the ratio range."""
    in_ratio = width / height
    if in_ratio < min(ratio):
        return int(round(width / min(ratio))), width
    if in_ratio > max(ratio):
        return height, int(round(height * max(ratio)))
    return height, width


__all__ = ["DeviceRandomResizedCrop"]
