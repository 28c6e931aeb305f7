"""Batches in a reproducible order, sharded like DistributedSampler.

The order is a permutation drawn from a torch.Generator seeded by (seed, epoch), so a resumed run replays
the same epoch. Rank r of W takes positions r, r+W, r+2W, ... of the global permutation: W ranks with batch b
see, step by step, exactly the images one process sees with batch W*b. Unlike DistributedSampler, an epoch is padded
(with W - t repeated images) only when its last global batch holds t < W images, so that every rank takes the same
number of steps; otherwise the ranks' last batches differ by at most one image and nothing repeats.

In-memory tensor datasets are indexed in bulk (one gather per batch, no per-image Python). Other datasets
go through a torch DataLoader; every image gets its own seed from the same generator and its transform
runs under that seed, so per-sample augmentation is identical for any num_workers and world size.
"""
from __future__ import annotations

import random
from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A generator for (seed, epoch): SeedSequence mixing, so nearby pairs give unrelated streams."""
    state = np.random.SeedSequence([seed, epoch, 0x6164]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def _unwrap(dataset: Dataset) -> tuple[Dataset, Tensor | None]:
    """The dataset under any Subsets, and the index map into it (None: no Subset)."""
    index: Tensor | None = None
    while isinstance(dataset, Subset):
        sub = torch.as_tensor(np.asarray(dataset.indices, dtype=np.int64))
        index = sub if index is None else sub[index]
        dataset = dataset.dataset
    return dataset, index


def _in_memory(dataset: Dataset) -> tuple[tuple[Tensor, ...], Tensor | None, object] | None:
    """(tensors, index map, prep) when ``dataset`` is a TensorDataset, possibly under Subsets."""
    dataset, index = _unwrap(dataset)
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) == 2:
        return dataset.tensors, index, getattr(dataset, "prep", None)
    return None


class _SeededItems(Dataset):
    """``dataset[(i, s)]`` = ``dataset[i]`` with torch's and Python's RNG seeded by ``s`` (then restored)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        py_state = random.getstate()
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)  # CPU only: CUDA RNG streams are left alone
            random.seed(seed)
            try:
                return self.dataset[index]
            finally:
                random.setstate(py_state)


class BatchLoader:
    """An iterable of (images, labels) batches with ``len()`` = number of batches for this rank."""

    def __init__(self, dataset: Dataset, *, batch_size: int, shuffle: bool, seed: int, epoch: int, drop_last: bool,
                 rank: int, world_size: int, num_workers: int, pool: WorkerPool | None = None) -> None:
        self.dataset, self.num_workers, self.pool = dataset, num_workers, pool
        n = len(dataset)  # type: ignore[arg-type]
        gen = epoch_generator(seed, epoch)
        order = torch.randperm(n, generator=gen) if shuffle else torch.arange(n)
        self.sample_seeds = torch.randint(0, 2**62, (n,), generator=gen)  # per global position
        self.loader_seed = int(torch.randint(0, 2**62, (1,), generator=gen))
        positions = torch.arange(n)
        tail = n % (world_size * batch_size)  # images in the last global batch (0: it is full)
        if world_size > 1 and drop_last:  # as DistributedSampler: drop the tail to a multiple of W
            positions = positions[: n - n % world_size]
        elif world_size > 1 and 0 < tail < world_size:  # a rank would have no image in the last global batch, and
            # one step fewer than the others: pad by wrapping, as DistributedSampler does (W - tail repeated images)
            positions = torch.cat([positions, positions[: world_size - tail]])
        positions = positions[rank::world_size]
        mine = order[positions] if n else positions
        seeds = self.sample_seeds[positions] if n else positions
        count = len(mine) // batch_size if drop_last else -(-len(mine) // batch_size)
        self.batches = [mine[i * batch_size:(i + 1) * batch_size] for i in range(count)]
        self.batch_seeds = [seeds[i * batch_size:(i + 1) * batch_size] for i in range(count)]
        self.memory = _in_memory(dataset)

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        if self.memory is not None:
            (images, labels), index, prep = self.memory
            for batch in self.batches:
                rows = batch if index is None else index[batch]
                x = images[rows]
                yield (prep(x) if prep is not None else x), labels[rows]
            return
        if self.pool is not None and self.num_workers > 0:  # warm workers keyed by the dataset under any Subsets
            base, index = _unwrap(self.dataset)
            keyed = [list(zip((b if index is None else index[b]).tolist(), s.tolist()))
                     for b, s in zip(self.batches, self.batch_seeds)]
            yield from self.pool.iterate(base, keyed, self.num_workers)
            return
        keyed = [list(zip(b.tolist(), s.tolist())) for b, s in zip(self.batches, self.batch_seeds)]
        loader = DataLoader(_SeededItems(self.dataset), batch_sampler=keyed, num_workers=self.num_workers,
                            generator=torch.Generator().manual_seed(self.loader_seed),
                            persistent_workers=False)
        yield from loader


class _Batches:
    """A batch sampler whose batches are replaced before each pass: a persistent DataLoader re-reads it per pass."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[int, int]]] = []

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class WorkerPool:
    """Warm decode workers for a whole run: one persistent DataLoader per dataset (train, val, test, ...; a Subset
    counts as the dataset under it, so evaluation shards and train-eval picks reuse its workers), reused by
    every epoch and every evaluation instead of forking cold workers each time, with pinned host memory for fast
    copies to a GPU. Results are the same as without it: every image is transformed under its own seed
    (``_SeededItems``), whichever worker gets it. ``close()`` (or ``with``) stops the workers."""

    def __init__(self, pin_memory: bool = False, prefetch_factor: int = 4) -> None:
        self.pin_memory, self.prefetch_factor = pin_memory, prefetch_factor
        self._loaders: dict[int, tuple[Dataset, _Batches, DataLoader]] = {}

    def iterate(self, dataset: Dataset, batches: list[list[tuple[int, int]]], num_workers: int) -> Iterator:
        entry = self._loaders.get(id(dataset))
        if entry is None or entry[2].num_workers != num_workers:
            sampler = _Batches()
            loader = DataLoader(_SeededItems(dataset), batch_sampler=sampler, num_workers=num_workers,
                                persistent_workers=True, pin_memory=self.pin_memory,
                                prefetch_factor=self.prefetch_factor)
            entry = self._loaders[id(dataset)] = (dataset, sampler, loader)  # holding dataset keeps its id unique
        entry[1].batches = batches
        yield from entry[2]

    def close(self) -> None:
        for _, _, loader in self._loaders.values():
            iterator = getattr(loader, "_iterator", None)
            if iterator is not None and hasattr(iterator, "_shutdown_workers"):
                iterator._shutdown_workers()
        self._loaders.clear()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_int(name: str, value: object, minimum: int) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name}={value!r} must be an integer >= {minimum}")
    return int(value)


def make_loader(dataset: Dataset, *, batch_size: int, shuffle: bool, seed: int = 0, epoch: int = 0,
                drop_last: bool = False, rank: int = 0, world_size: int = 1, num_workers: int = 0,
                pool: WorkerPool | None = None) -> BatchLoader:
    """Deterministic batches for (seed, epoch), this rank's disjoint shard of one global permutation.

    ``num_workers`` only applies to file-backed datasets; in-memory tensors are gathered in the calling process.
    ``pool``: keep the workers warm across calls (:class:`WorkerPool`); the batches are the same either way.
    """
    batch_size = _check_int("batch_size", batch_size, 1)
    seed, epoch = _check_int("seed", seed, 0), _check_int("epoch", epoch, 0)
    world_size = _check_int("world_size", world_size, 1)
    rank = _check_int("rank", rank, 0)
    if rank >= world_size:
        raise ValueError(f"rank={rank} must be < world_size={world_size}")
    num_workers = _check_int("num_workers", num_workers, 0)
    if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
        raise ValueError(f"make_loader needs a map-style dataset with __len__/__getitem__, got {type(dataset).__name__}")
    return BatchLoader(dataset, batch_size=batch_size, shuffle=bool(shuffle), seed=seed, epoch=epoch,
                       drop_last=bool(drop_last), rank=rank, world_size=world_size, num_workers=num_workers,
                       pool=pool)
