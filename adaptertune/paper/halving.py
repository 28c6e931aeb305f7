"""Does successive halving choose the rate the full grid chooses? Computed exactly from the stored selection grid.

Halving's rungs are prefixes of the full-length runs (``training.selection``), so its choice on a cell is a pure
function of the per-epoch validation accuracies of the tuned protocol's selection runs, which every mini cell already
has (``selection`` grid). Where it picks another rate, the table says whether that rate is within the seed noise:
the difference in test accuracy between the two selection runs (seed 0) against the sample sd over seeds of the cell's
tuned runs (the noise a rerun of the chosen rate shows). Test accuracy judges the choice here; it never makes it.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..store import runs as store
from ..training.selection import DIVERGED, halving_choice
from . import tuning


def selection_histories(runs: pd.DataFrame, profile: str, cells: list[tuple[str, str, str]],
                        root: str | Path | None = None) -> dict[tuple[str, str, str], dict[float, list[float]]]:
    """Per settled cell, each candidate rate's per-epoch validation accuracies (a diverged rate: []); cells with an
    unsettled candidate are left out."""
    rows = runs.drop_duplicates("run_id").set_index("run_id") if len(runs) else pd.DataFrame()
    out = {}
    for cell in cells:
        histories: dict[float, list[float]] = {}
        for cfg in tuning.selection_configs(profile, *cell):
            if cfg.run_id not in rows.index:
                break
            row = rows.loc[cfg.run_id]
            if row.get("status", "finished") == "failed" and str(row.get("error") or "").startswith(DIVERGED):
                histories[float(cfg.lr)] = []
            elif row.get("status", "finished") == "finished":
                histories[float(cfg.lr)] = store.load_metrics(cfg.run_id, root)["val_acc"].astype(float).tolist()
            else:
                break
        else:
            out[cell] = histories
    return out


def halving_table(histories: dict[tuple[str, str, str], dict[float, list[float]]], runs: pd.DataFrame,
                  profile: str) -> pd.DataFrame:
    """One row per cell: the full grid's rate, halving's rate and its cost, whether they agree, and otherwise the test
    accuracy difference of the two (points, seed 0) against the seed sd of the cell's tuned runs."""
    by_id = runs.drop_duplicates("run_id").set_index("run_id")
    out = []
    for (dataset, backbone, regime), hist in histories.items():
        configs = {float(c.lr): c for c in tuning.selection_configs(profile, dataset, backbone, regime)}
        epochs = next(iter(configs.values())).epochs
        grid = tuning.choose(runs, profile, dataset, backbone, regime)
        half = halving_choice(hist, epochs)
        finals = [c.run_id for c in tuning.final_configs(runs, profile, dataset, backbone, regime)]
        seed_accs = by_id.loc[[r for r in finals if r in by_id.index], "test_acc"].astype(float)
        sd = 100 * float(seed_accs.std(ddof=1)) if len(seed_accs) >= 2 else math.nan

        def test(lr: float, configs=configs) -> float:
            rid = configs[lr].run_id
            return 100 * float(by_id.loc[rid, "test_acc"]) if rid in by_id.index else math.nan

        diff = test(half.lr) - test(grid.lr) if grid is not None else math.nan
        same = grid is not None and half.lr == grid.lr
        verdict = ("same rate" if same else "pending" if grid is None or math.isnan(diff) or math.isnan(sd)
                   else "within seed noise" if abs(diff) <= sd else "outside seed noise")
        out.append({"dataset": dataset, "backbone": backbone, "regime": regime, "epochs": epochs,
                    "candidates": len(hist),
                    "rungs": " → ".join(f"{r.keep}@{r.epoch}" for r in half.plan.rungs),
                    "cost_runs": half.plan.cost, "grid_lr": grid.lr if grid is not None else np.nan,
                    "halving_lr": half.lr, "test_diff_points": 0.0 if same else diff, "seed_sd_points": sd,
                    "n_seeds": len(seed_accs), "verdict": verdict})
    return pd.DataFrame(out, columns=["dataset", "backbone", "regime", "epochs", "candidates", "rungs", "cost_runs",
                                      "grid_lr",
                                      "halving_lr", "test_diff_points", "seed_sd_points", "n_seeds", "verdict"])


def describe_halving(table: pd.DataFrame) -> str:
    """Markdown summary: how often halving agreed, was within the noise, or missed, and what it cost."""
    if table.empty:
        return "- No selection cell is settled yet: halving cannot be compared with the full grid."
    counts = table["verdict"].value_counts()
    n = len(table)
    costs = ", ".join(f"{e} epochs: {c:.2f}" for e, c in table.groupby("epochs")["cost_runs"].first().items())
    lines = [f"- Successive halving chose the full grid's rate on {counts.get('same rate', 0)}/{n} cells, another rate "
             f"within the seed noise on {counts.get('within seed noise', 0)}, outside it on "
             f"{counts.get('outside seed noise', 0)}" + (f" ({counts.get('pending', 0)} pending)" if counts.get(
                 "pending", 0) else "") + ".",
             f"- Its cost in full-length runs (all candidates' epochs / one run's): {costs}; the full grid costs one "
             f"full run per candidate ({', '.join(str(c) for c in sorted(table['candidates'].unique()))})."]
    missed = table[table["verdict"] == "outside seed noise"]
    for r in missed.itertuples(index=False):
        lines.append(f"- Missed: {r.dataset}/{r.backbone}/{r.regime}: halving {r.halving_lr:g} vs grid {r.grid_lr:g}, "
                     f"{r.test_diff_points:+.2f} points of test accuracy (seed sd {r.seed_sd_points:.2f}).")
    return "\n".join(lines)


__all__ = ["describe_halving", "halving_table", "selection_histories"]
