"""The run grids behind every table and figure, as registered records: ``GRID_RECORDS[name].build(ask)``.

A grid is one record: the runs it needs (``build``) and, for the tuned protocol's grids, the cells whose learning-rate
choice it waits for (``waits_for``) — stated once, beside each other, so a new table's runs are one new record and no
module branches on a grid's name. Most grids are fixed by the profile (``protocols``); the tuned protocol's grids
depend on the store: a cell's final runs exist once its selection runs have finished and chosen a rate (``tuning``),
so those grids take the settled-runs frame and grow as the store fills. Ablation grids vary one thing around the
adapter config of the ablation pair, so runs that coincide (same RunConfig -> same run_id) are trained once and
shared between tables.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import pandas as pd

from ..backbones import backbone_shape, mini_variant
from ..config import PROFILES, RunConfig
from ..regimes import methods
from ..training.selection import proxy_configs
from ..training.sweep import unique
from . import tuning
from .advisor import probe_configs
from .controls import source_accuracy
from .protocols import Controls, Protocol, config, protocol, recipe, seated

MAIN_REGIMES = methods(in_paper=True)  # the paper-recipe grids; the tuned protocol adds Protocol.beyond
Cell = tuple[str, str, str]  # (dataset, backbone, regime) of one learning-rate choice


@dataclass(frozen=True)
class Ask:
    """What a grid is built from: the profile, the settled runs deciding the tuned choices, and whether pending
    choices get stand-in rates (planning only: those configs are not the ones that will train)."""

    profile: str
    runs: pd.DataFrame
    assume: bool = False

    @cached_property
    def p(self) -> Protocol:
        return protocol(self.profile)

    @property
    def c(self) -> Controls:
        return self.p.controls


@dataclass(frozen=True)
class Grid:
    """One family of runs: ``build`` names them; ``waits_for`` lists the cells whose rate choice they need (none for
    the fixed grids), which is what ``pending_cells`` counts while the store fills."""

    name: str
    serves: str  # the table, figure or control it feeds (for the docs and the dry-run listing)
    build: Callable[[Ask], list[RunConfig]]
    waits_for: Callable[[Ask], list[Cell]] = lambda ask: []


def _product(profile: str, datasets, backbones, regimes, seeds, replicated: bool = False, **changes) -> list[RunConfig]:
    """Every combination; ``replicated`` puts seed s on pretraining replicate s (the main comparison)."""
    return [config(profile, d, seated(profile, b, s) if replicated else b, m, s, **changes)
            for b, d, m, s in itertools.product(backbones, datasets, regimes, seeds)]


def ablation_rate(runs: pd.DataFrame, profile: str, dataset: str, backbone: str, assume: bool = False) -> dict | None:
    """The learning rate an ablation of this pair trains at: ``{}`` (the recipe's) unless the profile ablates at the
    adapter's tuned rate, then ``{"lr": rate}``; None while that rate is not chosen yet."""
    if not protocol(profile).ablation_tuned:
        return {}
    choice = tuning.choose(runs, profile, dataset, backbone, "adapter", assume)
    return None if choice is None else {"lr": choice.lr}


def _ablation(ask: Ask, seeds: tuple[int, ...] | None = None, pair: tuple[str, str] | None = None,
              **changes) -> list[RunConfig]:
    dataset, backbone = pair or ask.p.ablation
    rate = ablation_rate(ask.runs, ask.profile, dataset, backbone, ask.assume)
    if rate is None:
        return []
    return [config(ask.profile, dataset, backbone, "adapter", s, **{**rate, **changes})
            for s in (seeds or ask.p.ablation_seeds or ask.p.seeds)]


def rank_pairs(profile: str) -> list[tuple[str, str, tuple[int, ...]]]:
    """(dataset, backbone, ranks) of the rank sweep: every rank on the ablation pair, ``pair_ranks`` on the others."""
    p = protocol(profile)
    pairs = [(d, b) for b in p.backbones for d in p.datasets] if p.pair_ranks else [p.ablation]
    return [(d, b, p.ranks if (d, b) == p.ablation else p.pair_ranks) for d, b in pairs]


def _scaled_lr(lr: float, factor: float) -> float:
    return float(f"{lr * factor:.3g}")  # 1e-2 / 3 -> 0.00333, one spelling per rate


def matched_backbone(profile: str) -> str | None:
    """The candidate snapshot whose source validation accuracy is nearest ``matched_to``'s (ties: the first listed);
    None where the profile has no matched-quality control. Read from the shipped backbones' provenance files."""
    c = protocol(profile).controls
    if not c.matched_candidates or c.matched_to is None:
        return None
    target = source_accuracy(c.matched_to, profile)
    return min(c.matched_candidates, key=lambda b: abs(source_accuracy(b, profile) - target))


def budget_rank(profile: str, backbone: str) -> int:
    """The adapter rank at the paper's relative budget: ``round(d / ratio)`` (ViT-S/16's 16/384 gives ratio 24)."""
    ratio = protocol(profile).controls.budget_ratio
    if ratio is None:
        raise ValueError(f"profile {profile!r} has no relative-budget control")
    return max(1, round(backbone_shape(backbone)[1] / ratio))


def selection_cells(profile: str) -> list[Cell]:
    """(dataset, backbone, regime) of every learning-rate search: the tuned regimes and the from-scratch control."""
    p = protocol(profile)
    cells = [(d, b, r) for b in p.backbones for d in p.datasets for r in p.tuned_regimes]
    cells += [(d, b, "scratch") for b in p.controls.scratch for d in p.datasets]
    return cells + dose_cells(profile)


def dose_cells(profile: str) -> list[Cell]:
    """(dataset, backbone, regime) of the dose-response's own learning-rate searches: adapter and full FT on every
    pretraining snapshot, and adapters on the random-init backbone (its full-training twin is the scratch control).
    Each backbone gets its own rate: a rate chosen on the final backbone can destabilise a weaker one."""
    c = protocol(profile).controls
    cells = [(d, b, r) for b in c.dose_backbones for d in c.dose_datasets for r in ("adapter", "full")]
    if c.dose_random:
        bases = dict.fromkeys(mini_variant(b)[0] for b in c.dose_backbones)
        cells += [(d, b, "random_adapter") for b in bases for d in c.dose_datasets]
    return cells


def _transferred(ask: Ask, dataset: str, base: str, regime: str, backbone: str, seeds: tuple[int, ...],
                 replicated: bool = False, **changes) -> list[RunConfig]:
    """Runs of ``backbone`` at the rate the tuned protocol chose for ``base`` (pending while that choice is);
    ``replicated`` puts seed s on pretraining replicate s."""
    choice = tuning.choose(ask.runs, ask.profile, dataset, base, regime, ask.assume)
    if choice is None:
        return []
    return [tuning.cell_config(ask.profile, dataset, seated(ask.profile, backbone, s) if replicated else backbone,
                               regime, s, choice.lr, **changes) for s in seeds]


def _finals(ask: Ask, cells, **kw) -> list[RunConfig]:
    return [x for cell in cells for x in tuning.final_configs(ask.runs, ask.profile, *cell, assume=ask.assume, **kw)]


def _main_cells(ask: Ask, regimes=None) -> list[Cell]:
    return [(d, b, r) for b in ask.p.backbones for d in ask.p.datasets for r in (regimes or ask.p.tuned_regimes)]


def _scratch_cells(ask: Ask) -> list[Cell]:
    return [(d, b, "scratch") for b in ask.c.scratch for d in ask.p.datasets]


def _matched_cells(ask: Ask) -> list[Cell]:
    small = matched_backbone(ask.profile)
    return [(d, mini_variant(small)[0], r) for d in ask.p.datasets for r in MAIN_REGIMES] if small else []


def _ablation_waits(ask: Ask, pairs: list[tuple[str, str]]) -> list[Cell]:
    return [(d, b, "adapter") for d, b in pairs] if ask.p.ablation_tuned else []


def _seeds(ask: Ask) -> list[RunConfig]:
    """The other seeds on the base backbone (replicate 0): between-seed spread beside between-pretraining spread."""
    others = tuple(s for s in ask.p.seeds if s != ask.p.selection_seed)
    return _finals(ask, _main_cells(ask, MAIN_REGIMES), seeds=others) if ask.p.replicates and others else []


def _budget(ask: Ask) -> list[RunConfig]:
    if not ask.c.budget_ratio:
        return []
    return [x for b in ask.p.backbones for d in ask.p.datasets
            for x in _transferred(ask, d, b, "adapter", b, ask.p.seeds, replicated=True,
                                  rank=budget_rank(ask.profile, b))]


def _longer(ask: Ask) -> list[RunConfig]:
    return [x for b in ask.p.backbones for d in ask.c.longer_datasets for r in ask.c.longer_regimes
            for x in _transferred(ask, d, b, r, b, ask.p.seeds, replicated=True,
                                  epochs=ask.c.longer_factor * recipe(ask.profile, d)["epochs"])]


def _matched(ask: Ask) -> list[RunConfig]:
    small = matched_backbone(ask.profile)
    if small is None:
        return []
    return [x for d in ask.p.datasets for r in MAIN_REGIMES
            for x in _transferred(ask, d, mini_variant(small)[0], r, small, ask.p.seeds)]


def _rank(ask: Ask) -> list[RunConfig]:
    p = ask.p
    configs = [x for d, b, ranks in rank_pairs(ask.profile) for r in ranks for x in _ablation(ask, pair=(d, b), rank=r)]
    seeds = p.ablation_seeds or p.seeds
    if p.ablation_tuned:  # head-only and full FT references at their own tuned rates, same seeds, base backbone
        return configs + _finals(ask, [(*p.ablation, m) for m in ("head", "full")], seeds=seeds)
    return configs + [config(ask.profile, *p.ablation, m, s) for m in ("head", "full") for s in seeds]


def _placement(ask: Ask) -> list[RunConfig]:
    depth = ask.p.ablation_depth
    return [x for every in (1, 2) for start in (0, depth // 2) for x in _ablation(ask, every=every, start=start)]


def _init(ask: Ask) -> list[RunConfig]:
    seeds = ask.p.init_seeds
    return _ablation(ask, seeds, init="zero") + [
        x for std in (ask.p.init_stds or (None,))
        for x in _ablation(ask, seeds, init="random", **({"init_std": std} if std is not None else {}))]


def _sensitivity(ask: Ask) -> list[RunConfig]:
    p = ask.p
    seeds = p.sensitivity_seeds or p.ablation_seeds or p.seeds
    rate = ablation_rate(ask.runs, ask.profile, *p.ablation, assume=ask.assume)
    if rate is None:
        return []
    return [x for knob, values in p.sensitivity.items() for v in values
            for x in _ablation(ask, seeds, **({"lr": _scaled_lr(rate["lr"], v)} if knob == "lr" and rate
                                              else {knob: v}))]


def _theory(ask: Ask) -> list[RunConfig]:
    """Full FT on every main dataset for the small backbone (seed 0): the task shifts whose spectra are measured."""
    backbone = ask.p.ablation[1]
    return ([config(ask.profile, d, backbone, "full", ask.p.seeds[0]) for d in ask.p.datasets]
            + grid("rank", ask.profile))


def _multitask(ask: Ask) -> list[RunConfig]:
    """Notebook 06's tasks: one adapter run per dataset with start = L/2 on the ablation backbone (seed 0), served
    together from one frozen backbone; the ablation dataset's run is the placement grid's (every=1, start=L/2)."""
    backbone = ask.p.ablation[1]
    return [config(ask.profile, d, backbone, "adapter", ask.p.seeds[0], start=ask.p.ablation_depth // 2)
            for d in ask.p.datasets]


_RECORDS = (
    Grid("main", "Tab.2 under the paper's recipe (one shared rate per regime)",
         lambda a: _product(a.profile, a.p.datasets, a.p.backbones, MAIN_REGIMES, a.p.seeds, replicated=True)),
    Grid("tuned", "Tab.2 under the tuned protocol (each regime at its validated rate)",
         lambda a: _finals(a, _main_cells(a), replicated=True), _main_cells),
    Grid("selection", "the tuned protocol's learning-rate search",
         lambda a: [x for cell in selection_cells(a.profile) for x in tuning.selection_configs(a.profile, *cell)]),
    Grid("seeds", "between-seed spread on the base backbones", _seeds,
         lambda a: _main_cells(a, MAIN_REGIMES) if a.p.replicates else []),
    Grid("extended", "Tab.6", lambda a: _product(a.profile, a.p.extended, a.p.backbones, MAIN_REGIMES, a.p.seeds)),
    Grid("rank", "Tab.3 and the rank elbow", _rank,
         lambda a: _ablation_waits(a, [(d, b) for d, b, _ in rank_pairs(a.profile)])),
    Grid("placement", "Tab.4 (placement)", _placement, lambda a: _ablation_waits(a, [a.p.ablation])),
    Grid("init", "Tab.4 (initialisation)", _init, lambda a: _ablation_waits(a, [a.p.ablation])),
    Grid("sensitivity", "Tab.5", _sensitivity, lambda a: _ablation_waits(a, [a.p.ablation])),
    Grid("theory", "the theory notebook's task shifts", _theory),
    Grid("scratch", "the from-scratch control", lambda a: _finals(a, _scratch_cells(a)), _scratch_cells),
    Grid("budget", "the relative-budget control", _budget,
         lambda a: [(d, b, "adapter") for b in a.p.backbones for d in a.p.datasets] if a.c.budget_ratio else []),
    Grid("longer", "the longer-schedule control", _longer,
         lambda a: [(d, b, r) for b in a.p.backbones for d in a.c.longer_datasets for r in a.c.longer_regimes]),
    Grid("matched", "widths compared at matched pretraining quality", _matched, _matched_cells),
    Grid("dose", "the dose-response control", lambda a: _finals(a, dose_cells(a.profile), seeds=a.c.dose_seeds),
         lambda a: dose_cells(a.profile)),
    Grid("backbone_seed", "the pretraining-seed control",
         lambda a: _product(a.profile, a.p.datasets, a.c.seed_backbones, MAIN_REGIMES, (a.p.selection_seed,))),
    Grid("advisor", "the rank advisor's probes, judged against the rank sweeps",
         lambda a: [x for b in a.p.backbones for d in a.p.datasets for x in probe_configs(d, b, a.profile)]),
    Grid("proxies", "fit's proxy rule judged against the full grid on every main selection cell",
         lambda a: [x for cell in _main_cells(a) for x in proxy_configs(tuning.search_configs(a.profile, *cell))]
         if a.p.judge_proxies else []),
    Grid("multitask", "notebook 06's tasks served from one backbone", _multitask),
)
GRID_RECORDS: dict[str, Grid] = {g.name: g for g in _RECORDS}
GRIDS = tuple(GRID_RECORDS)


def grid_record(name: str) -> Grid:
    if name not in GRID_RECORDS:
        raise ValueError(f"grid name {name!r} is unknown: choose one of {GRIDS}")
    return GRID_RECORDS[name]


def _ask(profile: str, runs: pd.DataFrame | None, assume: bool) -> Ask:
    if profile not in PROFILES:
        raise ValueError(f"profile={profile!r} is not allowed: choose one of {PROFILES}")
    return Ask(profile, runs if runs is not None else pd.DataFrame(columns=["run_id", "val_acc"]), assume)


def grid(name: str, profile: str, runs: pd.DataFrame | None = None, assume_pending: bool = False) -> list[RunConfig]:
    """The runs one table/figure family needs, deduplicated by run_id, in a stable order.

    ``runs`` (the settled-runs frame) decides the tuned protocol's grids; without it they hold only what needs no
    choice yet. ``assume_pending`` fills pending choices with stand-ins, to count and time the runs a grid will have.
    """
    ask = _ask(profile, runs, assume_pending)
    return unique(grid_record(name).build(ask))


def pending_cells(name: str, profile: str, runs: pd.DataFrame) -> int:
    """How many cells of a tuned-protocol grid still wait for their learning-rate choice (0 for the fixed grids)."""
    ask = _ask(profile, runs, False)
    return sum(tuning.choose(runs, profile, *cell) is None for cell in grid_record(name).waits_for(ask))


__all__ = ["GRIDS", "GRID_RECORDS", "MAIN_REGIMES", "Ask", "Grid", "ablation_rate", "budget_rank", "dose_cells", "grid",
           "grid_record", "matched_backbone", "pending_cells", "rank_pairs", "selection_cells"]
