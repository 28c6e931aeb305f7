"""The rank advisor: a cheap probe of the frozen backbone on the task -> a recommended adapter rank, judged elsewhere.

The probe is one short run per rank of the profile's per-pair rank sweep (``probe_ranks``), through the store: an
adapter on every block at the adapter grid's middle rate for ``PROBE_SHARE`` of the recipe's epochs, one seed. The
advice is the smallest rank whose probe validation accuracy is within ``MARGIN_POINTS`` of the best probe's (ties to
the smaller rank); the curve it rests on is measured, with ±1.96 binomial standard errors of each probe's validation
accuracy as its band.

Why measured and not predicted: the first advisor predicted the curve from the largest probe's data-weighted shift
spectrum (notebook 02's ``M Σ_h^{1/2}``: the share of spectral energy a rank-r map keeps) and advised r=1 on most
mini pairs, where the rank sweeps peak at r=16-64; it hit on 0 of 6 pairs. The spectrum is still measured (on the
largest probe) and reported per rank as ``captured``; it decides the placement advice: every-2 is advised when
neighbouring blocks shift along the same directions (mean overlap of their top-r output subspaces >=
``EVERY2_OVERLAP``), since one adapter can then do both blocks' work. ``paper.advice_table`` judges the advice
against the rank sweeps.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..config import RunConfig
from ..data import load_for_run
from ..inject import adapter_modules
from ..store import runs as run_store
from ..training.run import run
from . import tuning
from .protocols import protocol, recipe
from .shifts import block_shifts, run_models
from .theory import estimate_shift
from .userdata import check_selectable, dataset_name, default_profile

PROBE_SHARE = 0.4  # of the recipe's epochs, for each probe run (one per rank of the grid)
PROBE_IMAGES = 256  # training images whose block outputs are measured (never the test split)
MARGIN_POINTS = 1.0  # the advice: smallest rank predicted within this many points of the largest rank
EVERY2_OVERLAP = 0.5
MAX_COST_SHARE = 0.15  # of the rank sweep the advice replaces (every rank x every seed), checked in the tests


def probe_ranks(profile: str) -> tuple[int, ...]:
    """The ranks probed: those of the rank sweep every (dataset, backbone) pair runs, so every advice can be judged."""
    p = protocol(profile)
    return tuple(sorted(p.pair_ranks or p.ranks))


def probe_configs(dataset: str, backbone: str, profile: str, **changes) -> tuple[RunConfig, ...]:
    """One adapter per probed rank (ascending), on every block at the adapter grid's middle rate, ``PROBE_SHARE`` of
    the recipe's epochs, the selection seed."""
    p = protocol(profile)
    grid = tuning.candidates(profile, "adapter")
    base = tuning.cell_config(profile, dataset, backbone, "adapter", p.selection_seed, grid[len(grid) // 2], **changes)
    epochs = max(1, math.ceil(PROBE_SHARE * base.epochs))
    short = dict(epochs=epochs, warmup_epochs=min(base.warmup_epochs, epochs / 2))
    return tuple(base.with_(rank=r, every=1, start=0, **short) for r in probe_ranks(profile))


def probe_cost(profile: str, dataset: str) -> tuple[float, float]:
    """(probe cost in full adapter runs, its share of the rank sweep it replaces: the same ranks x every seed)."""
    ranks, seeds = probe_ranks(profile), protocol(profile).seeds
    full = recipe(profile, dataset)["epochs"]
    probe_epochs = max(1, math.ceil(PROBE_SHARE * full))
    runs = len(ranks) * probe_epochs / full
    return runs, runs / (len(ranks) * len(seeds))


def _spectra(adapter_run: str, images: int, root) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per adapted block: (data-weighted singular values τ, top output directions) of the probe's residual."""
    pretrained, trained = run_models(adapter_run, root)
    splits = load_for_run(run_store.load_config(adapter_run, root))
    pick = torch.randperm(len(splits.train_eval), generator=torch.Generator().manual_seed(0))[:images].tolist()
    batch = torch.stack([splits.train_eval[i][0] for i in pick])
    pairs = block_shifts(pretrained, trained, batch)
    out = []
    for b in sorted(adapter_modules(trained)):
        H, D = pairs[b]
        fit = estimate_shift(H, D)
        centred = (H - H.mean(0)) @ fit.M.T / math.sqrt(len(H))
        _, s, vt = np.linalg.svd(centred, full_matrices=False)
        out.append((s, vt))
    return out


def captured_energy(spectra: list[np.ndarray], ranks) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pooled, least, most) share of the spectral energy the best rank-r maps keep, per rank: pooled over blocks
    (each block weighted by its energy), and the least and most compressible block."""
    per_block, energies = [], []
    for s in spectra:
        s2 = np.sort(np.asarray(s, dtype=np.float64))[::-1] ** 2
        cum = np.concatenate([[0.0], np.cumsum(s2)])
        per_block.append(cum[np.minimum(np.asarray(ranks), len(s2))])
        energies.append(s2.sum())
    per_block, energies = np.array(per_block), np.array(energies)
    if energies.sum() <= 0:
        raise ValueError("the probe adapter did not move any block (zero shift): train the probe longer")
    shares = per_block / np.where(energies > 0, energies, 1.0)[:, None]
    return per_block.sum(0) / energies.sum(), shares.min(0), shares.max(0)


def subspace_overlap(directions: list[np.ndarray], rank: int) -> float:
    """Mean over neighbouring blocks of ||V_a V_bᵀ||_F² / r for their top-r output directions, corrected for chance
    (two random r-dim subspaces of d dims overlap r/d): 1 = the same subspace, 0 = unrelated; NaN when r >= d."""
    if len(directions) < 2:
        return float("nan")
    values = []
    for a, b in itertools.pairwise(directions):
        r, d = min(rank, len(a), len(b)), a.shape[1]
        if r >= d:
            return float("nan")
        raw = float(np.linalg.norm(a[:r] @ b[:r].T) ** 2 / r)
        values.append((raw - r / d) / (1 - r / d))
    return float(np.mean(values))


@dataclass(frozen=True)
class Advice:
    """A recommended rank and the measured curve it rests on (accuracies as fractions of validation accuracy)."""

    dataset: str
    backbone: str
    profile: str
    rank: int
    every2: bool
    overlap: float
    curve: list[dict]  # rank, probe val acc, low, high, captured (spectral energy share of the largest probe)
    val_images: int
    probe_runs: list[str]
    cost_runs: float
    cost_share: float

    @property
    def summary(self) -> str:
        return (f"rank {self.rank} ({'every=2 suffices' if self.every2 else 'keep every=1'}); probe cost "
                f"{self.cost_runs:.2f} adapter runs = {100 * self.cost_share:.1f}% of the rank sweep it replaces")

    def to_dict(self) -> dict:
        return {**asdict(self), "summary": self.summary}

    def markdown(self) -> str:
        lines = [f"Rank advice for {self.dataset} on {self.backbone}: **{self.summary}**.", "",
                 f"Probes: one short adapter run per rank ({self.val_images} validation images); the advice is the "
                 f"smallest rank within {MARGIN_POINTS:g} point(s) of the best probe. Neighbouring blocks' shift "
                 f"overlap {self.overlap:.2f} (every=2 when >= {EVERY2_OVERLAP}).", "",
                 "| rank | probe val acc | band | energy kept |", "|---:|---:|---|---:|"]
        lines += [f"| {c['rank']} | {100 * c['val_acc']:.2f}% | {100 * c['low']:.2f}–{100 * c['high']:.2f}% | "
                  f"{100 * c['captured']:.1f}% |" for c in self.curve]
        return "\n".join(lines) + "\n"


def advice_from(spectra: list[tuple[np.ndarray, np.ndarray]], probe_accs: dict[int, float],
                val_images: int) -> tuple[int, bool, float, list[dict]]:
    """The pure part: (rank, every2, overlap, curve) from each rank's probe accuracy and the largest probe's spectra."""
    ranks = sorted(probe_accs)
    captured, _, _ = captured_energy([s for s, _ in spectra], ranks)
    curve = []
    for r, c in zip(ranks, captured):
        acc = float(probe_accs[r])
        se = 1.96 * math.sqrt(acc * (1 - acc) / max(1, val_images))
        curve.append({"rank": r, "val_acc": acc, "low": acc - se, "high": acc + se, "captured": float(c)})
    best = max(c["val_acc"] for c in curve)
    rank = next(c["rank"] for c in curve if c["val_acc"] >= best - MARGIN_POINTS / 100 - 1e-12)
    overlap = subspace_overlap([v for _, v in spectra], rank)
    return rank, bool(overlap >= EVERY2_OVERLAP), overlap, curve  # NaN >= x is False: no room, keep every=1


def advice_of_records(dataset: str, backbone: str, profile: str, configs: tuple[RunConfig, ...],
                      records: list[dict], root=None) -> Advice:
    """The advice from the finished probe runs (their result records); reads the largest probe from the store."""
    probe_accs = {int(c.rank): float(r["metrics"]["val_acc"]) for c, r in zip(configs, records)}
    val_images = int(records[0]["dataset"]["sizes"]["val"])
    largest = max(configs, key=lambda c: c.rank)
    spectra = _spectra(largest.run_id, PROBE_IMAGES, root)
    rank, every2, overlap, curve = advice_from(spectra, probe_accs, val_images)
    cost_runs, cost_share = probe_cost(profile, dataset)
    return Advice(dataset, backbone, profile, rank, every2, overlap, curve, val_images,
                  [c.run_id for c in configs], cost_runs, cost_share)


def advise(data: str, backbone: str, *, profile: str | None = None, root=None, verbose: bool = False, log=print,
           **changes) -> Advice:
    """Run (or fetch) the probe runs and return the advice; see the module docstring."""
    dataset = dataset_name(data)
    profile = profile or default_profile(backbone)
    configs = probe_configs(dataset, backbone, profile, **changes)
    check_selectable(configs[0])
    records = []
    for cfg in configs:
        records.append(run(cfg, root=root, verbose=verbose))
        log(f"[{cfg.run_id}] probe rank {cfg.rank} ({cfg.epochs} epochs): val acc "
            f"{records[-1]['metrics']['val_acc']:.2%}")
    return advice_of_records(dataset, backbone, profile, configs, records, root)


__all__ = ["EVERY2_OVERLAP", "MARGIN_POINTS", "MAX_COST_SHARE", "PROBE_SHARE", "Advice", "advice_from",
           "advice_of_records", "advise", "probe_ranks",
           "captured_energy", "probe_configs", "probe_cost", "subspace_overlap"]
