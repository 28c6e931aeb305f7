"""The tuned protocol's learning-rate choice: one rate per (dataset, backbone, regime), chosen on validation.

For each cell the selection runs train the selection seed at every candidate rate of the regime's grid
(``Protocol.lr_grid``); the chosen rate is the one with the highest last-epoch validation accuracy (the weights the
test is read from), ties going to the smaller rate. Where one validation split is too small to decide and cannot be
made larger, ``Protocol.selection_seeds`` trains every rate on several seeds, each with its own validation split, and
the rule reads their mean (a rate that diverged on any seed is never chosen); mini's fmnist_lowdata gets a larger
split instead (150 images, data.registry.MINI_SIZES). Every seed then trains at that rate; a selection seed's final
run *is* its selection run. Test accuracy plays no part. The choice is a pure function of the stored selection runs, so anyone can inspect it
(``selection_table``) and recompute it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..config import RunConfig
from ..regimes import REGIMES
from ..training.selection import DIVERGED, best_rate
from .protocols import config, protocol, seated


@dataclass(frozen=True)
class Arm:
    """A regime as the tuned protocol sees it: a method, pretrained or not, and whose rate grid it searches."""

    name: str
    method: str
    pretrained: bool = True
    grid_from: str | None = None  # search another regime's candidates (from scratch: full fine-tuning's)

    @property
    def changes(self) -> dict:
        return {} if self.pretrained else {"pretrained": False}


# every registered regime is an arm of its own name; the controls add arms on a random-init backbone
CONTROL_ARMS: dict[str, Arm] = {
    "scratch": Arm("scratch", "full", pretrained=False, grid_from="full"),
    "random_adapter": Arm("random_adapter", "adapter", pretrained=False, grid_from="adapter"),  # adapters, random backbone
}


def arms() -> dict[str, Arm]:
    """The arms the tuned protocol knows: one per registered regime (read live), then the controls'."""
    return {name: Arm(name, name) for name in REGIMES} | CONTROL_ARMS


def arm(name: str) -> Arm:
    known = arms()
    if name not in known:
        raise ValueError(f"regime {name!r} is unknown to the tuned protocol: choose one of {tuple(known)}")
    return known[name]


def candidates(profile: str, regime: str) -> tuple[float, ...]:
    """The candidate learning rates of a regime in a profile."""
    a = arm(regime)
    return protocol(profile).lr_grid[a.grid_from or a.method]


def cell_config(profile: str, dataset: str, backbone: str, regime: str, seed: int, lr: float, **changes) -> RunConfig:
    """One run of the regime at ``lr``: the profile's recipe for the dataset, with the regime's own changes."""
    a = arm(regime)
    return config(profile, dataset, backbone, a.method, seed, lr=lr, **a.changes, **changes)


def selection_seeds(profile: str, dataset: str) -> tuple[int, ...]:
    """The seeds a dataset's rate is chosen on: the selection seed, or the several ``Protocol.selection_seeds`` gives."""
    p = protocol(profile)
    return p.selection_seeds.get(dataset, (p.selection_seed,))


def selection_configs(profile: str, dataset: str, backbone: str, regime: str,
                      seeds: tuple[int, ...] | None = None, **changes) -> list[RunConfig]:
    """Every candidate rate on each selection seed (rate-major); ``seeds`` overrides the dataset's."""
    return [cell_config(profile, dataset, backbone, regime, seed, lr, **changes) for lr in candidates(profile, regime)
            for seed in (seeds or selection_seeds(profile, dataset))]


def search_configs(profile: str, dataset: str, backbone: str, regime: str, **changes) -> list[RunConfig]:
    """What successive halving (``fit``, and its judgement against the grid) searches: the selection seed at every
    candidate rate, whatever seeds the grid itself averages; with ``changes`` applied."""
    return selection_configs(profile, dataset, backbone, regime, seeds=(protocol(profile).selection_seed,), **changes)


@dataclass(frozen=True)
class Choice:
    """The chosen rate of one cell and the validation accuracies it was chosen from (fractions; NaN = diverged)."""

    dataset: str
    backbone: str
    regime: str
    lr: float
    val_acc: dict[float, float]
    assumed: bool = False  # a stand-in while pending, for planning only (run-time does not depend on the rate)

    @property
    def margin(self) -> float:
        """How far the chosen rate's validation accuracy is ahead of the runner-up's (a fraction; inf if alone)."""
        others = [v for lr, v in self.val_acc.items() if lr != self.lr and not np.isnan(v)]
        return self.val_acc[self.lr] - max(others) if others else float("inf")

    @property
    def at_grid_edge(self) -> bool:
        """The winner is the smallest or largest candidate: the best rate may lie outside the grid."""
        return self.lr in (min(self.val_acc), max(self.val_acc))


def by_run_id(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs frame indexed by run id, one row each (empty when there are no runs)."""
    return runs.drop_duplicates("run_id").set_index("run_id") if len(runs) else pd.DataFrame()


def outcome(rows: pd.DataFrame, run_id: str) -> str | None:
    """How a run settled, as a choice reads it: "finished", "diverged" (loss not finite: scored NaN, never chosen) or
    None while it is unsettled (absent, running, or failed otherwise). ``rows``: :func:`by_run_id`'s frame, which
    may hold failed rows (``status``, ``error``)."""
    if run_id not in rows.index:
        return None
    row = rows.loc[run_id]
    status = row.get("status", "finished")
    if status == "finished":
        return "finished"
    return "diverged" if status == "failed" and str(row.get("error") or "").startswith(DIVERGED) else None


def _scores(runs: pd.DataFrame, configs: list[RunConfig]) -> dict[float, float]:
    """Validation accuracy per candidate rate, the mean over its selection seeds, for the rates whose runs are all
    settled: finished (their last-epoch val_acc) or diverged (NaN, which makes the mean NaN)."""
    rows = by_run_id(runs)
    by_lr: dict[float, list[float | None]] = {}
    for c in configs:
        how = outcome(rows, c.run_id)
        value = None if how is None else float(rows.loc[c.run_id, "val_acc"]) if how == "finished" else float("nan")
        by_lr.setdefault(float(c.lr), []).append(value)
    return {lr: float(np.mean(v)) for lr, v in by_lr.items() if all(x is not None for x in v)}


def _val_by_lr(runs: pd.DataFrame, configs: list[RunConfig]) -> dict[float, float] | None:
    scores = _scores(runs, configs)
    return scores if len(scores) == len({float(c.lr) for c in configs}) else None


def choose(runs: pd.DataFrame, profile: str, dataset: str, backbone: str, regime: str,
           assume: bool = False) -> Choice | None:
    """The cell's choice, or None while any of its selection runs is unsettled (neither finished nor diverged);
    ``assume=True`` returns a stand-in (the middle candidate) instead of None, to plan the run count and time."""
    scores = _val_by_lr(runs, selection_configs(profile, dataset, backbone, regime))
    if scores is None:
        grid = candidates(profile, regime)
        return Choice(dataset, backbone, regime, grid[len(grid) // 2], {}, assumed=True) if assume else None
    best = best_rate(scores)  # the one rule (training.selection), shared with `fit`
    if best is None:
        raise ValueError(f"every candidate rate of {dataset}/{backbone}/{regime} diverged ({sorted(scores)}): widen the "
                         "lr grid of the profile towards smaller rates")
    return Choice(dataset, backbone, regime, best, scores)


def final_configs(runs: pd.DataFrame, profile: str, dataset: str, backbone: str, regime: str,
                  seeds: tuple[int, ...] | None = None, assume: bool = False, replicated: bool = False) -> list[RunConfig]:
    """Every seed at the chosen rate; empty while the choice is pending (unless ``assume``: see :func:`choose`).
    ``replicated``: seed s trains on pretraining replicate s (the main comparison; the rate is chosen on replicate 0)."""
    choice = choose(runs, profile, dataset, backbone, regime, assume)
    if choice is None:
        return []
    return [cell_config(profile, dataset, seated(profile, backbone, s) if replicated else backbone, regime, s, choice.lr)
            for s in (seeds or protocol(profile).seeds)]


def selection_table(runs: pd.DataFrame, profile: str, cells: list[tuple[str, str, str]]) -> pd.DataFrame:
    """One row per (dataset, backbone, regime, candidate rate): validation accuracy (%), whether it was chosen, the
    winner's margin over the runner-up (points) and whether it sits at the edge of the grid. Pending cells show NaN."""
    rows = []
    for dataset, backbone, regime in cells:
        choice = choose(runs, profile, dataset, backbone, regime)  # its scores are the cell's when it is decided
        done = choice.val_acc if choice is not None else _scores(runs, selection_configs(profile, dataset, backbone, regime))
        for lr in candidates(profile, regime):
            rows.append({"dataset": dataset, "backbone": backbone, "regime": regime, "lr": lr,
                         "selection_seeds": len(selection_seeds(profile, dataset)),
                         "val_acc": 100 * done[lr] if lr in done else np.nan,
                         "status": "pending" if lr not in done else "diverged" if np.isnan(done[lr]) else "finished",
                         "chosen": bool(choice is not None and choice.lr == lr),
                         "margin_points": 100 * choice.margin if choice is not None and choice.lr == lr else np.nan,
                         "at_grid_edge": bool(choice is not None and choice.lr == lr and choice.at_grid_edge)})
    return pd.DataFrame(rows)


def describe_selection(table: pd.DataFrame) -> str:
    """Markdown: the chosen rate per regime (how often each won), cells pending, and winners at a grid edge (the best
    rate may lie outside the grid there)."""
    chosen = table[table["chosen"]]
    if chosen.empty:
        return "- No learning rate is chosen yet: the selection runs are missing."
    lines = []
    for regime, part in chosen.groupby("regime", sort=False):
        counts = part["lr"].value_counts().sort_index()
        lines.append(f"- {regime}: chosen " + ", ".join(f"{lr:g} ×{n}" for lr, n in counts.items())
                     + f" over {len(part)} cell(s); median margin over the runner-up "
                     f"{part['margin_points'].median():.2f} points of validation accuracy (mean over "
                     + "/".join(str(n) for n in sorted(set(part["selection_seeds"]))) + " selection seed(s)).")
    edge = chosen[chosen["at_grid_edge"]]
    if len(edge):
        lines.append(f"- {len(edge)} winner(s) at the edge of their grid (" + ", ".join(
            f"{d}/{b}/{r} {lr:g}" for d, b, r, lr in edge[["dataset", "backbone", "regime", "lr"]].itertuples(index=False))
            + "): the best rate may lie outside the grid.")
    pending = table.groupby(["dataset", "backbone", "regime"])["chosen"].any()
    if (~pending).any():
        lines.append(f"- {int((~pending).sum())} cell(s) still wait for their selection runs.")
    diverged = table[table["status"] == "diverged"]
    if len(diverged):
        lines.append(f"- {len(diverged)} candidate run(s) diverged (loss became NaN/inf) and were never chosen.")
    return "\n".join(lines)


__all__ = ["CONTROL_ARMS", "arms", "by_run_id", "outcome", "describe_selection", "DIVERGED", "Arm", "Choice", "arm", "candidates", "cell_config", "choose", "final_configs", "search_configs", "selection_configs", "selection_seeds",
           "selection_table"]
