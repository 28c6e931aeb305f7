"""The validation split decoded once per run: every later epoch replays the batches of the first pass.

Why: a run scores its validation split after every epoch (50 times in the paper recipe) through the per-image PIL
path (Resize + CenterCrop), which is deterministic: the same pixels every epoch. On a GPU that pass waits on CPU
decode (``paper.plan`` models it), so the first pass keeps each batch and the others replay it. What is kept is the
uint8 code of every value (ToTensor made each one k/255 before Normalize; a quarter of the float batch's bytes),
recovered from the batch the PIL path delivered and checked bit for bit on the run's device: a replayed batch *is*
the streamed batch, or nothing is kept (an eval transform that is not ToTensor + Normalize with the backbone's mean
and std streams every epoch, as before). Splits held in memory (the mini sets, cached features) are gathered without
a decode and are not kept. :attr:`Replay.state` says which happened, for the run's record.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import torch
from torch import Tensor
from torch.utils.data import Dataset

from .loader import _in_memory, _unwrap

REPLAY_LIMIT_BYTES = 4 * 2**30  # codes one run may keep (Tiny-ImageNet's 10,000-image validation split: ~1.5 GB)
NOT_USED = "not used yet"


class Replay:
    """A ``make_loader`` for one split scored every epoch: the first call streams from ``make_loader`` and keeps the
    codes, later calls for the same split (same images, order and batch size) replay them on ``device``."""

    def __init__(self, make_loader: Callable[..., Iterable], data_config: dict, device: torch.device,
                 limit_bytes: int = REPLAY_LIMIT_BYTES) -> None:
        self.make_loader, self.device, self.limit_bytes = make_loader, device, limit_bytes
        channels = int(data_config["input_size"][0])
        # torchvision's Normalize: (x - mean) / std with float32 tensors of shape (C, 1, 1); 255 a device tensor, so
        # the division is a true division on every device (a CPU scalar would let CUDA multiply by 1/255 instead)
        self.mean = torch.as_tensor(data_config["mean"][:channels], dtype=torch.float32, device=device).view(-1, 1, 1)
        self.std = torch.as_tensor(data_config["std"][:channels], dtype=torch.float32, device=device).view(-1, 1, 1)
        self.full_scale = torch.tensor(255.0, device=device)
        self.key: tuple | None = None
        self.batches: list[tuple[Tensor, Tensor]] | None = None
        self.state = NOT_USED

    def normalise(self, codes: Tensor) -> Tensor:
        """The float batch ToTensor + Normalize make of these uint8 codes."""
        return codes.float().div(self.full_scale).sub_(self.mean).div_(self.std)

    def codes(self, x: Tensor) -> Tensor:
        """The uint8 codes a normalised batch was made of (exact when it was made by :meth:`normalise`'s arithmetic)."""
        return (x * self.std + self.mean).mul_(255.0).round_().clamp_(0, 255).to(torch.uint8)

    def __call__(self, dataset: Dataset, **kwargs) -> Iterable[tuple[Tensor, Tensor]]:
        base, index = _unwrap(dataset)
        key = (id(base), None if index is None else tuple(index.tolist()), kwargs.get("batch_size"),
               kwargs.get("shuffle"), kwargs.get("seed"), kwargs.get("epoch"))
        if self.batches is not None and key == self.key:
            return _Replayed(self)
        loader = self.make_loader(dataset, **kwargs)
        if _in_memory(dataset) is not None:
            self.state = "off: the split is held in memory (gathered, not decoded)"
            return loader
        if self.key is not None or kwargs.get("shuffle"):  # one split per Replay, in a fixed order
            return loader
        self.key, self._base = key, base  # holding the dataset keeps its id unique
        return self._record(loader, len(dataset))

    def _off(self, why: str) -> None:
        self.state, self.batches = f"off: {why}", None

    def _record(self, loader: Iterable[tuple[Tensor, Tensor]], n: int) -> Iterator[tuple[Tensor, Tensor]]:
        kept: list[tuple[Tensor, Tensor]] | None = []
        for x, y in loader:
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            if kept is not None:
                kept = self._keep(kept, x, y, n)
            yield x, y
        if kept is not None:
            self.batches = kept
            size = sum(c.numel() for c, _ in kept)
            self.state = f"kept {n} images ({size / 2**30:.2f} GiB of uint8 codes) on {self.device}"

    def _keep(self, kept: list, x: Tensor, y: Tensor, n: int) -> list | None:
        if not kept:
            if x.dtype != torch.float32 or x.ndim != 4 or x.shape[1] != self.mean.shape[0]:
                self._off(f"the batches are {x.dtype} {tuple(x.shape)}, not normalised (N, "
                          f"{self.mean.shape[0]}, H, W) float32 images")
                return None
            need = n * x[0].numel()
            if need > self.limit_bytes:
                self._off(f"{n} images need {need / 2**30:.2f} GiB of codes, over the "
                          f"{self.limit_bytes / 2**30:.2f} GiB limit")
                return None
        codes = self.codes(x)
        if not torch.equal(self.normalise(codes), x):
            self._off("a batch is not ToTensor + Normalize of uint8 images with the backbone's mean and std")
            return None
        kept.append((codes, y))
        return kept


class _Replayed:
    def __init__(self, replay: Replay) -> None:
        self.replay = replay

    def __len__(self) -> int:
        return len(self.replay.batches or [])

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for codes, y in self.replay.batches or []:
            yield self.replay.normalise(codes), y


__all__ = ["NOT_USED", "REPLAY_LIMIT_BYTES", "Replay"]
