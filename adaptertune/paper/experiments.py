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
from ..regimes import METHODS
from ..store import runs as results
from ..store.table import load_results
from ..training.pretrain import pretrain_mini
from ..training.sweep import unique
from . import tuning
from .advisor import probe_configs
from .protocols import (PAPER_BACKBONES, PAPER_CORE, PAPER_EXTENDED, PROTOCOL_NAMES, PROTOCOLS, Controls, Protocol,
                        config, protocol, recipe)

# "main" is the paper-recipe Tab.2 grid, "tuned" the same cells under the tuned protocol; "selection" the tuned
# protocol's learning-rate search; "scratch", "budget", "dose" and "backbone_seed" are the controls.
GRIDS = ("main", "tuned", "selection", "extended", "rank", "placement", "init", "sensitivity", "theory", "scratch",
         "budget", "dose", "backbone_seed", "advisor", "multitask")
MAIN_REGIMES = ("head", "adapter", "full")


def _product(profile: str, datasets, backbones, methods, seeds, **changes) -> list[RunConfig]:
    return [config(profile, d, b, m, s, **changes) for b, d, m, s in itertools.product(backbones, datasets, methods, seeds)]


def _ablation(profile: str, seeds: tuple[int, ...] | None = None, **changes) -> list[RunConfig]:
    p = protocol(profile)
    dataset, backbone = p.ablation
    return [config(profile, dataset, backbone, "adapter", s, **changes) for s in (seeds or p.ablation_seeds or p.seeds)]


def budget_rank(profile: str, backbone: str) -> int:
    """The adapter rank at the paper's relative budget: ``round(d / ratio)`` (ViT-S/16's 16/384 gives ratio 24)."""
    ratio = protocol(profile).controls.budget_ratio
    if ratio is None:
        raise ValueError(f"profile {profile!r} has no relative-budget control")
    return max(1, round(backbone_shape(backbone)[1] / ratio))


def selection_cells(profile: str) -> list[tuple[str, str, str]]:
    """(dataset, backbone, regime) of every learning-rate search: the main regimes and the from-scratch control."""
    p = protocol(profile)
    cells = [(d, b, r) for b in p.backbones for d in p.datasets for r in MAIN_REGIMES]
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
                 seeds: tuple[int, ...], assume: bool, **changes) -> list[RunConfig]:
    """Runs of ``backbone`` at the rate the tuned protocol chose for ``base`` (pending while that choice is)."""
    choice = tuning.choose(runs, profile, dataset, base, regime, assume)
    if choice is None:
        return []
    return [tuning.cell_config(profile, dataset, backbone, regime, s, choice.lr, **changes) for s in seeds]


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
        configs = _product(profile, p.datasets, p.backbones, METHODS, p.seeds)
    elif name == "selection":
        configs = [x for cell in selection_cells(profile) for x in tuning.selection_configs(profile, *cell)]
    elif name == "tuned":
        configs = [x for b in p.backbones for d in p.datasets for r in MAIN_REGIMES
                   for x in tuning.final_configs(runs, profile, d, b, r, assume=a)]
    elif name == "scratch":
        configs = [x for b in c.scratch for d in p.datasets for x in tuning.final_configs(runs, profile, d, b, "scratch", assume=a)]
    elif name == "budget":
        configs = ([x for b in p.backbones for d in p.datasets for x in _transferred(
            runs, profile, d, b, "adapter", b, p.seeds, a, rank=budget_rank(profile, b))] if c.budget_ratio else [])
    elif name == "dose":
        configs = [x for cell in dose_cells(profile) for x in tuning.final_configs(runs, profile, *cell, assume=a)]
    elif name == "backbone_seed":
        configs = _product(profile, p.datasets, c.seed_backbones, METHODS, (p.selection_seed,))
    elif name == "extended":
        configs = _product(profile, p.extended, p.backbones, METHODS, p.seeds)
    elif name == "rank":
        dataset, backbone = p.ablation
        configs = [x for r in p.ranks for x in _ablation(profile, rank=r)]
        configs += [config(profile, dataset, backbone, m, s) for m in ("head", "full") for s in (p.ablation_seeds or p.seeds)]
    elif name == "placement":
        depth = p.ablation_depth
        configs = [x for every in (1, 2) for start in (0, depth // 2) for x in _ablation(profile, every=every, start=start)]
    elif name == "init":
        configs = [x for init in ("zero", "random") for x in _ablation(profile, p.init_seeds, init=init)]
    elif name == "sensitivity":
        dataset, backbone = p.ablation
        seeds = p.sensitivity_seeds or p.ablation_seeds or p.seeds
        configs = [config(profile, dataset, backbone, "adapter", s, **{knob: v}) for knob, values in p.sensitivity.items()
                   for v in values for s in seeds]
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
        "tuned": [(d, b, r) for b in p.backbones for d in p.datasets for r in MAIN_REGIMES],
        "scratch": [(d, b, "scratch") for b in c.scratch for d in p.datasets],
        "budget": [(d, b, "adapter") for b in p.backbones for d in p.datasets] if c.budget_ratio else [],
        "dose": dose_cells(profile),
    }.get(name, [])
    return sum(tuning.choose(runs, profile, *cell) is None for cell in waiting)


def all_configs(profile: str, names: tuple[str, ...] = GRIDS, runs: pd.DataFrame | None = None) -> list[RunConfig]:
    """Every run of the profile's grids that is known now (tuned grids grow with ``runs``), each once."""
    return unique(c for name in names for c in grid(name, profile, runs))


def sensitivity_defaults(profile: str) -> dict[str, float]:
    """The main-grid value of each sensitivity knob (the row every Tab.5 block shares)."""
    base = config(profile, *protocol(profile).ablation, "adapter")
    return {knob: float(getattr(base, knob)) for knob in protocol(profile).sensitivity}


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
    if profile in ("smoke", "mini"):
        return f"make {profile}" if profile == "mini" else "python -m adaptertune.paper.suite --profile smoke"
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
        shown = ", ".join(f"{c.dataset}/{c.backbone}/{c.method}" + (f" r={c.rank}" if c.method == "adapter" else "")
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


def ensure_backbones(profile: str, verbose: bool = False, root: str | Path | None = None) -> dict:
    """Pretrain the mini backbones of ``profile`` if missing (cached after the first call); paper: nothing to do."""
    if profile == "paper":
        return {}
    return pretrain_mini(profile, names=protocol(profile).pretrained_backbones(), verbose=verbose, root=root)


def find_run(runs: pd.DataFrame, **match) -> str:
    """The run_id of the one row matching every ``column=value`` (e.g. dataset, backbone, method, seed)."""
    mask = pd.Series(True, index=runs.index)
    for key, value in match.items():
        mask &= runs[key] == value
    hits = runs.loc[mask, "run_id"].tolist()
    if len(hits) != 1:
        raise LookupError(f"{len(hits)} finished runs match {match} (expected exactly 1); run the grid first")
    return hits[0]


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
           "Controls", "GridRuns", "Protocol", "all_configs", "budget_rank", "config", "curves", "ensure_backbones",
           "dose_cells", "dose_frame", "find_run", "grid", "load_grid", "protocol_frames", "seed_backbone_bases", "selection_cells",
           "settled_runs", "make_command", "pending_cells", "pick_runs", "plan", "protocol", "recipe",
           "select", "sensitivity_defaults"]
