"""The batched device crop draws torchvision's RandomResizedCrop + flip distribution and renders what the PIL path does.

Tolerances: the crop statistics use a two-sample Kolmogorov-Smirnov distance below 0.03 on 20,000 draws per path (the
5% critical value at these sizes is 0.014, so 0.03 only fails on a real difference; seeds are fixed, so the test is
deterministic); the flip rate within 0.02 of 1/2; the mean image of 3,000 augmented copies within 0.03 (pixel values in
[0, 1]) of the PIL path's everywhere, about 6 standard errors of either mean.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from adaptertune.data.device_augment import DeviceRandomResizedCrop

N = 20000


def _ks(a: np.ndarray, b: np.ndarray) -> float:
    grid = np.union1d(a, b)
    cdf = lambda x: np.searchsorted(np.sort(x), grid, side="right") / len(x)  # noqa: E731
    return float(np.abs(cdf(a) - cdf(b)).max())


@pytest.mark.parametrize("height, width", [(32, 32), (64, 48)])
def test_crop_parameters_follow_torchvision(height, width):
    aug = DeviceRandomResizedCrop(size=(224, 224), mean=(0.5,) * 3, std=(0.5,) * 3)
    i, j, h, w, flip = (t.numpy() for t in aug.params(N, height, width, torch.Generator().manual_seed(0)))
    image = Image.new("RGB", (width, height))
    torch.manual_seed(1)
    ref = np.array([T.RandomResizedCrop.get_params(image, [0.08, 1.0], [3 / 4, 4 / 3]) for _ in range(N)])
    ri, rj, rh, rw = ref.T
    assert (h >= 1).all() and (w >= 1).all() and (i + h <= height).all() and (j + w <= width).all()
    for ours, theirs in [(h * w, rh * rw), (w / h, rw / rh), (i + h / 2, ri + rh / 2), (j + w / 2, rj + rw / 2)]:
        assert _ks(ours, theirs) < 0.03
    assert abs(flip.mean() - 0.5) < 0.02


def test_the_mean_image_matches_the_pil_path():
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, 32)
    pixels = np.stack([np.add.outer(ramp, 0 * ramp), np.add.outer(0 * ramp, ramp), rng.integers(0, 256, (32, 32))], -1)
    pixels = pixels.clip(0, 255).astype(np.uint8)
    n, size = 3000, 48
    pil = T.Compose([T.RandomResizedCrop(size, interpolation=T.InterpolationMode.BILINEAR), T.RandomHorizontalFlip(),
                     T.ToTensor()])
    torch.manual_seed(2)
    image = Image.fromarray(pixels)
    reference = torch.stack([pil(image) for _ in range(n)]).mean(0)
    aug = DeviceRandomResizedCrop(size=(size, size), mean=(0.0,) * 3, std=(1.0,) * 3)
    batch = torch.from_numpy(pixels).permute(2, 0, 1).unsqueeze(0).expand(n, -1, -1, -1).contiguous()
    ours = aug(batch, torch.Generator().manual_seed(3)).mean(0)
    assert ours.shape == reference.shape
    assert (ours - reference).abs().max() < 0.03


def test_a_seeded_generator_repeats_the_batch_and_bad_input_is_refused():
    aug = DeviceRandomResizedCrop(size=(16, 16), mean=(0.5,), std=(0.25,))
    x = torch.randint(0, 256, (8, 1, 20, 20), dtype=torch.uint8)
    assert torch.equal(aug(x, torch.Generator().manual_seed(5)), aug(x, torch.Generator().manual_seed(5)))
    with pytest.raises(ValueError, match="uint8"):
        aug(x.float())
    with pytest.raises(ValueError, match="scale"):
        DeviceRandomResizedCrop(size=(16, 16), mean=(0.5,), std=(0.25,), scale=(0.5, 0.1))
