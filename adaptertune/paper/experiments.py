"""The paper's grids as data: which of a profile's runs the store holds (``load_grid`` -> ``GridRuns``), the plan of
every run with the grids it serves, and the runs frame helpers the notebooks read. The grids themselves are
registered records in ``grids``; their names are re-exported here, the notebooks' one entry point.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..backbones import mini_variant
from ..config import RunConfig
from ..profiles import profile_record
from ..store import runs as run_store
from ..store.table import load_results
from ..training.sweep import unique
from . import tuning
from .grids import (GRID_RECORDS, GRIDS, MAIN_REGIMES, ablation_rate, budget_rank, dose_cells, grid, matched_backbone,
                    pending_cells, rank_pairs, selection_cells)
from .protocols import (PAPER_BACKBONES, PAPER_CORE, PAPER_EXTENDED, PROTOCOL_NAMES, PROTOCOLS, Controls, Protocol,
                        config, protocol, recipe, seated)


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
    loaders = {"steps": run_store.load_steps, "metrics": run_store.load_metrics}
    if kind not in loaders:
        raise ValueError(f"kind={kind!r} is not allowed: choose one of {tuple(loaders)}")
    parts = []
    for _, row in runs.iterrows():
        part = loaders[kind](row["run_id"])
        for col in ("run_id",) + keep:
            part[col] = row[col]
        parts.append(part)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


__all__ = ["GRIDS", "GRID_RECORDS", "MAIN_REGIMES", "PAPER_BACKBONES", "PAPER_CORE", "PAPER_EXTENDED", "PROTOCOLS",
           "PROTOCOL_NAMES", "Controls", "GridRuns", "Protocol", "all_configs", "budget_rank", "config", "curves",
           "dose_cells", "dose_frame", "grid", "load_grid", "make_command", "matched_backbone", "pending_cells",
           "pick_runs", "plan", "protocol", "protocol_frames", "rank_pairs", "recipe", "seated", "seed_backbone_bases",
           "select", "selection_cells", "sensitivity_defaults", "settled_runs"]
