"""Warm workers for a whole run: the same batches as cold per-epoch loaders, from worker processes started once."""
from __future__ import annotations

import os

import torch
from torch.utils.data import Dataset, Subset

from adaptertune.data import make_loader
from adaptertune.data.loader import WorkerPool
from adaptertune.training.run import resolve_workers


class _Noisy(Dataset):
    """A file-backed stand-in: each item draws from torch's RNG (as an augmentation would) and names its process."""

    def __len__(self) -> int:
        return 24

    def __getitem__(self, index: int):
        return torch.rand(3), torch.tensor([index, os.getpid()])


def _epochs(pool: WorkerPool | None, dataset: Dataset, num_workers: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    out = []
    for epoch in range(3):
        for x, y in make_loader(dataset, batch_size=5, shuffle=True, seed=7, epoch=epoch, num_workers=num_workers,
                                pool=pool):
            out.append((x, y))
    return out


def test_warm_workers_give_the_cold_loaders_batches_and_start_once():
    data = _Noisy()
    cold = _epochs(None, data, 2)
    with WorkerPool() as pool:
        warm = _epochs(pool, data, 2)
    assert len(warm) == len(cold) == 3 * 5
    for (xc, yc), (xw, yw) in zip(cold, warm):
        assert torch.equal(xc, xw) and torch.equal(yc[:, 0], yw[:, 0])  # same images, same augmentation draws
    cold_pids = {int(p) for _, y in cold for p in y[:, 1]}
    warm_pids = {int(p) for _, y in warm for p in y[:, 1]}
    assert len(warm_pids) <= 2 < len(cold_pids)  # two workers for the run, instead of two per epoch


def test_fresh_subsets_of_one_dataset_share_its_warm_workers():
    data = _Noisy()
    with WorkerPool() as pool:
        pids, rows = set(), []
        for _ in range(3):  # as evaluation builds a new strided Subset every epoch
            shard = Subset(data, list(range(1, len(data), 2)))
            for _, y in make_loader(shard, batch_size=4, shuffle=False, num_workers=2, pool=pool):
                pids |= {int(p) for p in y[:, 1]}
                rows += y[:, 0].tolist()
        assert len(pool._loaders) == 1 and len(pids) <= 2
    assert rows == list(range(1, len(data), 2)) * 3  # the subset's own items, in order


def test_workers_default_to_the_cores_per_gpu_on_cuda_only():
    assert resolve_workers(None, torch.device("cpu")) == 0
    assert resolve_workers(3, torch.device("cpu")) == 3
    if torch.cuda.is_available():
        assert resolve_workers(None, torch.device("cuda", 0)) >= 1
