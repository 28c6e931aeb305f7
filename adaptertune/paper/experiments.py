"""The run grids behind every table and figure, per profile: ``grid(name, profile, runs) -> list[RunConfig]``.

Most grids are fixed by the profile (``protocols``). The tuned protocol's grids depend on the store: a cell's final
runs exist once its selection runs have finished and chosen a learning rate (``tuning``), so those grids take the
finished-runs frame and grow as the store fills; training them is a loop until nothing new appears
(``suite.train``). Ablation grids vary one thing around the main grid's adapter config, so runs that coincide (same
RunConfig -> same run_id) are trained once and shared between tables.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..backbones import backbone_shape, mini_variant
from ..config import PROFILES, RunConfig
from ..profiles import profile_record
from ..regimes import methods
from ..store import runs as results
from ..store.table import load_results
from ..training.sweep import unique
from . import tuning
from .controls import source_accuracy
from .advisor import probe_configs
from .protocols import (PAPER_BACKBONES, PAPER_CORE, PAPER_EXTENDED, PROTOCOL_NAMES, PROTOCOLS, Controls, Protocol,
                        config, protocol, recipe, seated)

# "main" is the paper-recipe Tab.2 grid, "tuned" the same cells under the tuned protocol; "selection" the tuned
# protocol's learning-rate search; "scratch", "budget", "longer", "dose" and "backbone_seed" are the controls.
GRIDS = ("main", "tuned", "selection", "seeds", "extended", "rank", "placement", "init", "sensitivity", "theory",
         "scratch", "budget", "longer", "matched", "dose", "backbone_seed", "advisor", "multitask")
MAIN_REGIMES = methods(in_paper=True)  # the paper-recipe grids; the tuned protocol adds Protocol.beyond


def _product(profile: str, datasets, backbones, methods, seeds, replicated: bool = False, **changes) -> list[RunConfig]:
    """Every combination; ``replicated`` puts seed s on pretraining replicate s (the main comparison)."""
    return [config(profile, d, seated(profile, b, s) if replicated else b, m, s, **changes)
            for b, d, m, s in itertools.product(backbones, datasets, methods, seeds)]


def ablation_rate(runs: pd.DataFrame, profile: str, dataset: str, backbone: str, assume: bool = False) -> dict | None:
    """The learning rate an ablation of this pair trains at: ``{}`` (the recipe's) unless the profile ablates at the
    adapter's tuned rate, then ``{"lr": rate}``; None while that rate is not chosen yet."""
    if not protocol(profile).ablation_tuned:
        return {}
    choice = tuning.choose(runs, profile, dataset, backbone, "adapter", assume)
    return None if choice is None else {"lr": choice.lr}


def _ablation(profile: str, runs: pd.DataFrame, assume: bool, seeds: tuple[int, ...] | None = None,
              pair: tuple[str, str] | None = None, **changes) -> list[RunConfig]:
    p = protocol(profile)
    dataset, backbone = pair or p.ablation
    rate = ablation_rate(runs, profile, dataset, backbone, assume)
    if rate is None:
        return []
    return [config(profile, dataset, backbone, "adapter", s, **{**rate, **changes})
            for s in (seeds or p.ablation_seeds or p.seeds)]


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


def selection_cells(profile: str) -> list[tuple[str, str, str]]:
    """(dataset, backbone, regime) of every learning-rate search: the tuned regimes and the from-scratch control."""
    p = protocol(profile)
    cells = [(d, b, r) for b in p.backbones for d in p.datasets for r in p.tuned_regimes]
    cells += [(d, b, "scratch") for b in p.controls.scratch for d in p.datasets]
    return cells + dose_cells(profile)


def dose_cells(profile: str) -> list[tuple[str, str, str]]:
    """(dataset, backbone, regime) of the dose-response's own learning-rate searches: adapter and full FT on every
    pretraining snapshot, and adapters on the random-init backbone (its full-training twin is the scratch control).
    Each backbone gets its own rate: a rate chosen on the final backbone can destabilise a weaker one."""
    c = protocol(profile).controls
    cells = [(d, b, r) for b in c.dose_backbones for d in c.dose_datasets for r in ("adapter", "full")]
    if c.dose_random:
        bases = dict.fromkeys(mini_variant(b)[0] for b in c.dose_backbones)
        cells += [(d, b, "random_adapter") for b in bases for d in c.dose_datasets]
    return cells


def _transferred(runs: pd.DataFrame, profile: str, dataset: str, base: str, regime: str, backbone: str,
                 seeds: tuple[int, ...], assume: bool, replicated: bool = False, **changes) -> list[RunConfig]:
    """Runs of ``backbone`` at the rate the tuned protocol chose for ``base`` (pending while that choice is);
    ``replicated`` puts seed s on pretraining replicate s."""
    choice = tuning.choose(runs, profile, dataset, base, regime, assume)
    if choice is None:
        return []
    return [tuning.cell_config(profile, dataset, seated(profile, backbone, s) if replicated else backbone, regime, s,
                               choice.lr, **changes) for s in seeds]


def grid(name: str, profile: str, runs: pd.DataFrame | None = None, assume_pending: bool = False) -> list[RunConfig]:
    """The runs one table/figure family needs, deduplicated by run_id, in a stable order.

    ``runs`` (the settled-runs frame, :func:`settled_runs`) decides the tuned protocol's grids; without it they hold
    only what needs no choice yet. ``assume_pending`` fills pending choices with stand-ins, to count and time the
    runs a grid will have (planning only: those configs are not the ones that will train).
    """
    a = assume_pending
    if profile not in PROFILES:
        raise ValueError(f"profile={profile!r} is not allowed: choose one of {PROFILES}")
    p, c = protocol(profile), protocol(profile).controls
    runs = runs if runs is not None else pd.DataFrame(columns=["run_id", "val_acc"])
    if name == "main":
        configs = _product(profile, p.datasets, p.backbones, MAIN_REGIMES, p.seeds, replicated=True)
    elif name == "selection":
        configs = [x for cell in selection_cells(profile) for x in tuning.selection_configs(profile, *cell)]
    elif name == "tuned":
        configs = [x for b in p.backbones for d in p.datasets for r in p.tuned_regimes
                   for x in tuning.final_configs(runs, profile, d, b, r, assume=a, replicated=True)]
    elif name == "seeds":
        # the other seeds on the base backbone (replicate 0): between-seed spread beside between-pretraining spread
        others = tuple(s for s in p.seeds if s != p.selection_seed)
        configs = ([x for b in p.backbones for d in p.datasets for r in MAIN_REGIMES
                    for x in tuning.final_configs(runs, profile, d, b, r, seeds=others, assume=a)]
                   if p.replicates and others else [])
    elif name == "scratch":
        configs = [x for b in c.scratch for d in p.datasets for x in tuning.final_configs(runs, profile, d, b, "scratch", assume=a)]
    elif name == "budget":
        configs = ([x for b in p.backbones for d in p.datasets for x in _transferred(
            runs, profile, d, b, "adapter", b, p.seeds, a, replicated=True, rank=budget_rank(profile, b))]
            if c.budget_ratio else [])
    elif name == "longer":
        configs = [x for b in p.backbones for d in c.longer_datasets for r in MAIN_REGIMES
                   for x in _transferred(runs, profile, d, b, r, b, p.seeds, a, replicated=True,
                                         epochs=c.longer_factor * recipe(profile, d)["epochs"])]
    elif name == "matched":
        small = matched_backbone(profile)
        configs = [] if small is None else [
            x for d in p.datasets for r in MAIN_REGIMES
            for x in _transferred(runs, profile, d, mini_variant(small)[0], r, small, p.seeds, a)]
    elif name == "dose":
        configs = [x for cell in dose_cells(profile)
                   for x in tuning.final_configs(runs, profile, *cell, seeds=c.dose_seeds, assume=a)]
    elif name == "backbone_seed":
        configs = _product(profile, p.datasets, c.seed_backbones, MAIN_REGIMES, (p.selection_seed,))
    elif name == "extended":
        configs = _product(profile, p.extended, p.backbones, MAIN_REGIMES, p.seeds)
    elif name == "rank":
        configs = [x for d, b, ranks in rank_pairs(profile) for r in ranks
                   for x in _ablation(profile, runs, a, pair=(d, b), rank=r)]
        if p.ablation_tuned:  # head-only and full FT references at their own tuned rates, same seeds, base backbone
            seeds = p.ablation_seeds or p.seeds
            configs += [x for m in ("head", "full") for x in tuning.final_configs(runs, profile, *p.ablation, m,
                                                                                   seeds=seeds, assume=a)]
        else:
            dataset, backbone = p.ablation
            configs += [config(profile, dataset, backbone, m, s) for m in ("head", "full")
                        for s in (p.ablation_seeds or p.seeds)]
    elif name == "placement":
        depth = p.ablation_depth
        configs = [x for every in (1, 2) for start in (0, depth // 2)
                   for x in _ablation(profile, runs, a, every=every, start=start)]
    elif name == "init":
        configs = _ablation(profile, runs, a, p.init_seeds, init="zero")
        configs += [x for std in (p.init_stds or (None,))
                    for x in _ablation(profile, runs, a, p.init_seeds, init="random",
                                       **({"init_std": std} if std is not None else {}))]
    elif name == "sensitivity":
        seeds = p.sensitivity_seeds or p.ablation_seeds or p.seeds
        rate = ablation_rate(runs, profile, *p.ablation, assume=a)
        configs = [] if rate is None else [
            x for knob, values in p.sensitivity.items() for v in values
            for x in _ablation(profile, runs, a, seeds, **(
                {"lr": _scaled_lr(rate["lr"], v)} if knob == "lr" and rate else {knob: v}))]
    elif name == "theory":
        # full FT on every main dataset for the small backbone (seed 0): the task shifts whose spectra are measured
        backbone = p.ablation[1]
        configs = [config(profile, d, backbone, "full", p.seeds[0]) for d in p.datasets] + grid("rank", profile)
    elif name == "multitask":
        # notebook 06's tasks: one adapter run per dataset with start = L/2 on the ablation backbone (seed 0), served
        # together from one frozen backbone; the ablation dataset's run is the placement grid's (every=1, start=L/2)
        backbone = p.ablation[1]
        configs = [config(profile, d, backbone, "adapter", p.seeds[0], start=p.ablation_depth // 2) for d in p.datasets]
    elif name == "advisor":  # the rank advisor's two probe runs on every pair (judged against the rank sweeps)
        configs = [x for b in p.backbones for d in p.datasets for x in probe_configs(d, b, profile)]
    else:
        raise ValueError(f"grid name {name!r} is unknown: choose one of {GRIDS}")
    return unique(configs)


def protocol_frames(grid_runs: GridRuns) -> dict[str, pd.DataFrame]:
    """The main comparison under each protocol: ``{"paper-recipe": main grid rows, "tuned": tuned grid rows}``."""
    return {"paper-recipe": grid_runs.select("main"), "tuned": grid_runs.select("tuned")}


def seed_backbone_bases(profile: str) -> dict[str, str]:
    """Each other-seed backbone of the pretraining-seed control and the main backbone it repeats."""
    return {b: mini_variant(b)[0] for b in protocol(profile).controls.seed_backbones}


def dose_frame(grid_runs: GridRuns) -> pd.DataFrame:
    """Every dose point of the dose-response control: the snapshot backbones' runs, the final backbone's tuned
    adapter and full runs, and the random-init backbone (adapters from the dose grid, full training = the scratch
    control), on the dose datasets."""
    p = protocol(grid_runs.profile)
    bases = {mini_variant(b)[0] for b in p.controls.dose_backbones}
    keep = lambda df: df[df["dataset"].isin(p.controls.dose_datasets) & df["backbone"].isin(bases)]  # noqa: E731
    tuned = keep(grid_runs.select("tuned"))
    parts = [grid_runs.select("dose"), tuned[tuned["method"].isin(["adapter", "full"])], keep(grid_runs.select("scratch"))]
    return pd.concat([x for x in parts if len(x)], ignore_index=True) if any(len(x) for x in parts) else parts[0]


def pending_cells(name: str, profile: str, runs: pd.DataFrame) -> int:
    """How many cells of a tuned-protocol grid still wait for their learning-rate choice (0 for the fixed grids)."""
    p, c = protocol(profile), protocol(profile).controls
    waiting = {
        "tuned": [(d, b, r) for b in p.backbones for d in p.datasets for r in p.tuned_regimes],
        "scratch": [(d, b, "scratch") for b in c.scratch for d in p.datasets],
        "budget": [(d, b, "adapter") for b in p.backbones for d in p.datasets] if c.budget_ratio else [],
        "dose": dose_cells(profile),
        "longer": [(d, b, r) for b in p.backbones for d in c.longer_datasets for r in MAIN_REGIMES],
        "matched": ([(d, mini_variant(small)[0], r) for d in p.datasets for r in MAIN_REGIMES]
                    if (small := matched_backbone(profile)) else []),
        "seeds": [(d, b, r) for b in p.backbones for d in p.datasets for r in MAIN_REGIMES] if p.replicates else [],
        **({g: [(d, b, "adapter") for d, b, _ in rank_pairs(profile)] if g == "rank" else [(*p.ablation, "adapter")]
            for g in ("rank", "placement", "init", "sensitivity")} if p.ablation_tuned else {}),
    }.get(name, [])
    return sum(tuning.choose(runs, profile, *cell) is None for cell in waiting)


def all_configs(profile: str, names: tuple[str, ...] = GRIDS, runs: pd.DataFrame | None = None) -> list[RunConfig]:
    """Every run of the profile's grids that is known now (tuned grids grow with ``runs``), each once."""
    return unique(c for name in names for c in grid(name, profile, runs))


def sensitivity_defaults(profile: str, runs: pd.DataFrame | None = None) -> dict[str, float]:
    """The value of each sensitivity knob that every Tab.5 block shares: the recipe's, with the adapter's tuned rate
    where the profile ablates at it (NaN while that rate is pending)."""
    p = protocol(profile)
    base = config(profile, *p.ablation, "adapter")
    out = {knob: float(getattr(base, knob)) for knob in p.sensitivity}
    if "lr" in out and p.ablation_tuned:
        rate = ablation_rate(runs if runs is not None else pd.DataFrame(columns=["run_id", "val_acc"]), profile, *p.ablation)
        out["lr"] = rate["lr"] if rate else float("nan")
    return out


def select(results: pd.DataFrame, name: str, profile: str, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """The rows of ``results`` that belong to grid ``name`` of ``profile`` (matched by run_id); ``runs`` (default
    ``results``) decides the tuned protocol's grids."""
    ids = {c.run_id for c in grid(name, profile, results if runs is None else runs)}
    return results[results["run_id"].isin(ids)].reset_index(drop=True)


def plan(profile: str, names: tuple[str, ...] = GRIDS, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per run of the profile (deduplicated), with the grids it serves; the ``--dry-run`` listing. Runs of
    tuned cells whose rate is not chosen yet are listed with ``projected=True`` and a stand-in rate."""
    serves: dict[str, list[str]] = {}
    configs: dict[str, RunConfig] = {}
    known = {c.run_id for c in all_configs(profile, names, runs)}
    for name in names:
        for c in grid(name, profile, runs, assume_pending=True):
            serves.setdefault(c.run_id, []).append(name)
            configs.setdefault(c.run_id, c)
    configs = {rid: c.resolved() for rid, c in configs.items()}  # adapter fields None for head/full
    rows = [{"run_id": rid, "grids": ",".join(serves[rid]), "dataset": c.dataset, "backbone": c.backbone,
             "method": c.method, "pretrained": c.pretrained, "rank": c.rank, "every": c.every, "start": c.start,
             "init": c.init, "scale": c.scale, "lr": c.lr, "weight_decay": c.weight_decay, "seed": c.seed,
             "epochs": c.epochs, "limit": c.limit, "projected": rid not in known}
            for rid, c in configs.items()]
    return pd.DataFrame(rows)


def make_command(profile: str, names: tuple[str, ...]) -> str:
    """The one command that trains the missing runs of ``names`` (the whole suite for the offline profiles)."""
    command = profile_record(profile).suite_command
    if command is not None:
        return command
    return "python -m adaptertune sweep --profile " + profile + "".join(f" --grid {n}" for n in names)


@dataclass(frozen=True)
class GridRuns:
    """The finished runs of some grids of a profile and the runs still missing: what a notebook renders.

    ``store`` is the whole store's table of settled runs, finished or failed (it decides the tuned protocol's grids: a
    diverged learning rate is a settled candidate); ``runs`` the finished rows of these grids; ``pending`` counts
    tuned-protocol cells whose runs cannot be named yet (their learning rate is not chosen).
    """

    profile: str
    names: tuple[str, ...]
    runs: pd.DataFrame
    missing: tuple[RunConfig, ...]
    pending: int
    store: pd.DataFrame

    @property
    def complete(self) -> bool:
        return not self.missing and not self.pending

    def select(self, name: str) -> pd.DataFrame:
        """The finished rows of one of the grids."""
        if name not in self.names:
            raise ValueError(f"grid {name!r} was not loaded: this GridRuns holds {self.names}")
        return select(self.runs, name, self.profile, self.store)

    def note(self) -> str:
        """Markdown: how many runs exist and, if some are missing, which and the command that makes them."""
        total = len(self.runs) + len(self.missing)
        label = ", ".join(self.names)
        if self.complete:
            return f"All {total} runs of grid(s) {label} ({self.profile}) are in the run store."
        shown = ", ".join(f"{c.dataset}/{c.backbone}/{c.method}" + (f" r={c.rank}" if c.adapter_config() is not None else "")
                          + f" lr={c.lr:g} seed={c.seed}" for c in self.missing[:6])
        more = f" and {len(self.missing) - 6} more" if len(self.missing) > 6 else ""
        waiting = (f" {self.pending} tuned-protocol cell(s) wait for their learning-rate selection runs, so their "
                   "runs are not even named yet." if self.pending else "")
        return (f"**{len(self.missing)} of {total} known runs of grid(s) {label} ({self.profile}) are missing** "
                f"({shown or 'none'}{more}).{waiting} What follows shows the {len(self.runs)} that exist and marks the "
                f"rest as missing. Make them with `{make_command(self.profile, self.names)}`.")

    def _repr_markdown_(self) -> str:
        return self.note()

    def __repr__(self) -> str:  # short: the plain-text form is stored in executed notebooks beside the Markdown one
        return (f"GridRuns(profile={self.profile!r}, names={self.names!r}, {len(self.runs)} finished, "
                f"{len(self.missing)} missing, {self.pending} pending)")


def load_grid(profile: str, *names: str, root: str | Path | None = None) -> GridRuns:
    """The store's finished runs of grids ``names`` of ``profile`` (all grids if none named); nothing is trained."""
    names = names or GRIDS
    store = settled_runs(root)
    configs = all_configs(profile, tuple(names), store)
    finished = store[store["status"] == "finished"]
    runs = finished[finished["run_id"].isin({c.run_id for c in configs})].reset_index(drop=True)
    settled = set(store["run_id"][(store["status"] == "finished") | _diverged(store)])
    missing = tuple(c for c in configs if c.run_id not in settled)
    pending = sum(pending_cells(name, profile, store) for name in names)
    return GridRuns(profile, tuple(names), runs, missing, pending, store)


def settled_runs(root: str | Path | None = None) -> pd.DataFrame:
    """Finished and failed runs of the store: what the tuned protocol's choices are made from."""
    return load_results(root, status=("finished", "failed"))


def _diverged(store: pd.DataFrame) -> pd.Series:
    return (store["status"] == "failed") & store["error"].fillna("").str.startswith(tuning.DIVERGED)


def pick_runs(runs: pd.DataFrame, by: str, order: tuple | None = None, **match) -> dict:
    """``{value of column by: run_id}`` over the rows matching every ``column=value``; each value at most once,
    in the given ``order`` of values (values missing from the store are left out)."""
    mask = pd.Series(True, index=runs.index)
    for key, value in match.items():
        mask &= runs[key] == value
    chosen = runs.loc[mask]
    doubled = chosen[by][chosen[by].duplicated()].tolist()
    if doubled:
        raise LookupError(f"several finished runs match {match} for {by}={doubled}: narrow the match")
    found = dict(zip(chosen[by], chosen["run_id"]))
    return {k: found[k] for k in (order if order is not None else sorted(found)) if k in found}


def curves(runs: pd.DataFrame, kind: str = "steps", keep: tuple[str, ...] = ("method", "init", "seed", "rank")) -> pd.DataFrame:
    """Per-step (``steps``) or per-epoch (``metrics``) logs of every run in ``runs``, with config columns attached."""
    loaders = {"steps": results.load_steps, "metrics": results.load_metrics}
    if kind not in loaders:
        raise ValueError(f"kind={kind!r} is not allowed: choose one of {tuple(loaders)}")
    parts = []
    for _, row in runs.iterrows():
        part = loaders[kind](row["run_id"])
        for col in ("run_id",) + keep:
            part[col] = row[col]
        parts.append(part)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


__all__ = ["GRIDS", "MAIN_REGIMES", "PAPER_BACKBONES", "PAPER_CORE", "PAPER_EXTENDED", "PROTOCOLS", "PROTOCOL_NAMES",
           "Controls", "GridRuns", "Protocol", "all_configs", "budget_rank", "config", "curves",
           "dose_cells", "dose_frame", "grid", "load_grid", "protocol_frames", "seed_backbone_bases", "selection_cells",
           "settled_runs", "make_command", "pending_cells", "pick_runs", "plan", "protocol", "recipe",
           "select", "sensitivity_defaults"]
