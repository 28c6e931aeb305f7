"""Does successive halving choose the rate the full grid chooses? Computed exactly from the stored selection grid.

Halving's rungs are prefixes of the full-length runs (``training.selection``), so its choice on a cell is a pure
function of the per-epoch validation accuracies of the tuned protocol's selection runs, which every mini cell already
has (``selection`` grid). Where it picks another rate, the table compares the two selection runs' test accuracy (seed 0)
with the seed noise: the sample sd over seeds of the cell's tuned runs (what a rerun of the chosen rate shows), or,
for a cell tuned on one seed only, the root-mean-square of those sds over the same dataset's cells (labelled
``pooled``). A difference beyond the noise is a miss when halving's rate is worse and is reported as such when it is
better (the grid's choice is itself one noisy validation reading). Test accuracy judges the choice; it never makes it.

The proxy rule (``fit``'s) is judged the same way where the profile trains its proxy runs (``proxies`` grid): its
first rung is read from those short runs, its finalists from the same full-length selection runs. Its cost is given
in epochs here; its measured wall time (the proxies' and the losing finalist's recorded ``wall_s`` over the winner's,
:func:`proxy_wall`) differs on every pass, so it sits with the store's other timings, outside the reproducible table.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..store import runs as run_store
from ..training.selection import DEFAULT_BUDGET, Halving, halving_choice, proxy_configs
from . import tuning


def selection_histories(runs: pd.DataFrame, profile: str, cells: list[tuple[str, str, str]],
                        root: str | Path | None = None) -> dict[tuple[str, str, str], dict[float, list[float]]]:
    """Per settled cell, each candidate rate's per-epoch validation accuracies (a diverged rate: []); cells with an
    unsettled candidate are left out."""
    rows = tuning.by_run_id(runs)
    out = {}
    for cell in cells:
        histories: dict[float, list[float]] = {}
        for cfg in tuning.search_configs(profile, *cell):
            how = tuning.outcome(rows, cfg.run_id)
            if how is None:
                break
            histories[float(cfg.lr)] = [] if how == "diverged" else \
                run_store.load_metrics(cfg.run_id, root)["val_acc"].astype(float).tolist()
        else:
            out[cell] = histories
    return out


VERDICTS = ("same rate", "within seed noise", "better, beyond the noise", "worse, beyond the noise")
NOT_RUN = "no proxy runs"


def proxy_scores(runs: pd.DataFrame, profile: str,
                 cells: list[tuple[str, str, str]]) -> dict[tuple[str, str, str], dict[float, tuple[float, float]]]:
    """Per cell whose proxy runs are all settled: each rate's (proxy validation accuracy, wall seconds); a diverged
    proxy scores NaN. Cells without proxies (a profile that does not judge them) are left out."""
    rows = tuning.by_run_id(runs)
    out = {}
    for cell in cells:
        proxies = proxy_configs(tuning.search_configs(profile, *cell))
        found = {}
        for cfg in proxies:
            how = tuning.outcome(rows, cfg.run_id)
            if how is not None:
                row = rows.loc[cfg.run_id]
                found[float(cfg.lr)] = (float(row["val_acc"]) if how == "finished" else math.nan,
                                        float(row.get("wall_s", math.nan)))
        if proxies and len(found) == len(proxies):
            out[cell] = found
    return out


def _cell_sds(runs: pd.DataFrame, by_id: pd.DataFrame, profile: str,
              cells: list[tuple[str, str, str]]) -> dict[tuple, tuple[float, int]]:
    """(sd of test accuracy in points, n seeds) of each cell's tuned runs; NaN sd below two seeds. ``by_id``: the
    runs indexed by run id (built once by the caller)."""
    out = {}
    for cell in cells:
        finals = [c.run_id for c in tuning.final_configs(runs, profile, *cell)]
        accs = by_id.loc[[r for r in finals if r in by_id.index], "test_acc"].astype(float)
        out[cell] = (100 * float(accs.std(ddof=1)) if len(accs) >= 2 else math.nan, len(accs))
    return out


def _verdict(diff: float, sd: float, same: bool, decided: bool) -> str:
    if same:
        return VERDICTS[0]
    if not decided or math.isnan(diff) or math.isnan(sd):
        return "pending"
    return VERDICTS[1] if abs(diff) <= sd else VERDICTS[2] if diff > 0 else VERDICTS[3]


def _proxy_columns(choice: Halving | None, grid_lr: float | None, test, sd: float) -> dict:
    """The proxy rule's columns of one cell (NaN and ``NOT_RUN`` where the cell has no proxy runs)."""
    if choice is None:
        return {"proxy_lr": np.nan, "proxy_cost_runs": np.nan, "proxy_overhead_runs": np.nan,
                "proxy_test_diff_points": np.nan, "proxy_verdict": NOT_RUN}
    same = grid_lr is not None and choice.lr == grid_lr
    diff = 0.0 if same else (test(choice.lr) - test(grid_lr) if grid_lr is not None else math.nan)
    return {"proxy_lr": choice.lr, "proxy_cost_runs": choice.plan.cost, "proxy_overhead_runs": choice.plan.overhead,
            "proxy_test_diff_points": diff, "proxy_verdict": _verdict(diff, sd, same, grid_lr is not None)}


def _proxy_choice(history: dict[float, list[float]], epochs: int, proxies: dict[float, tuple[float, float]] | None):
    return halving_choice(history, epochs, proxies={lr: v for lr, (v, _) in proxies.items()}) if proxies else None


def proxy_wall(runs: pd.DataFrame, profile: str, cells: list[tuple[str, str, str]],
               root: str | Path | None = None) -> pd.Series:
    """The proxy rule's recorded wall time beyond the final run, per cell whose proxy and selection runs are settled,
    in final runs: the proxies' and the losing finalists' ``wall_s`` over the winner's. A measured time, different on
    every pass, so it is reported with the store's other timings (:mod:`.store_time`), never in ``tab2_halving``."""
    by_id = tuning.by_run_id(runs)
    histories = selection_histories(runs, profile, cells, root)
    out = {}
    for cell, prox in proxy_scores(runs, profile, list(histories)).items():
        configs = {float(c.lr): c for c in tuning.search_configs(profile, *cell)}
        choice = _proxy_choice(histories[cell], next(iter(configs.values())).epochs, prox)

        def wall(lr: float, configs=configs) -> float:
            rid = configs[lr].run_id
            return float(by_id.loc[rid, "wall_s"]) if rid in by_id.index else math.nan

        spent = sum(w for _, w in prox.values()) + sum(wall(lr) for lr in choice.scores[choice.plan.epochs])
        out[cell] = spent / wall(choice.lr) - 1
    return pd.Series(out, dtype=float, name="proxy_wall_overhead_runs")


def halving_table(histories: dict[tuple[str, str, str], dict[float, list[float]]], runs: pd.DataFrame,
                  profile: str, proxies: dict | None = None) -> pd.DataFrame:
    """One row per cell: the full grid's rate, halving's rate and its cost, whether they agree, and otherwise the test
    accuracy difference of the two (points, seed 0) against the seed noise (the cell's, or pooled over its dataset);
    the same for the proxy rule where ``proxies`` (:func:`proxy_scores`) has the cell."""
    by_id = tuning.by_run_id(runs)
    sds = _cell_sds(runs, by_id, profile, list(histories))
    pooled: dict[str, list[float]] = {}
    for (dataset, _, _), (sd, _) in sds.items():
        if not math.isnan(sd):
            pooled.setdefault(dataset, []).append(sd)
    out = []
    for (dataset, backbone, regime), hist in histories.items():
        configs = {float(c.lr): c for c in tuning.search_configs(profile, dataset, backbone, regime)}
        epochs = next(iter(configs.values())).epochs
        grid = tuning.choose(runs, profile, dataset, backbone, regime)
        half = halving_choice(hist, epochs)
        sd, n_seeds = sds[(dataset, backbone, regime)]
        noise_from = f"cell ({n_seeds} seeds)"
        if math.isnan(sd) and pooled.get(dataset):
            sd = float(np.sqrt(np.mean(np.square(pooled[dataset]))))
            noise_from = f"pooled ({len(pooled[dataset])} {dataset} cells)"

        def test(lr: float, configs=configs) -> float:
            rid = configs[lr].run_id
            return 100 * float(by_id.loc[rid, "test_acc"]) if rid in by_id.index else math.nan

        diff = test(half.lr) - test(grid.lr) if grid is not None else math.nan
        same = grid is not None and half.lr == grid.lr
        verdict = _verdict(diff, sd, same, grid is not None)
        proxy_choice = _proxy_choice(hist, epochs, (proxies or {}).get((dataset, backbone, regime)))
        out.append({"dataset": dataset, "backbone": backbone, "regime": regime, "epochs": epochs,
                    "candidates": len(hist),
                    "rungs": " → ".join(f"{r.keep}@{r.epoch}" for r in half.plan.rungs),
                    "cost_runs": half.plan.cost, "overhead_runs": half.plan.overhead,
                    "grid_lr": grid.lr if grid is not None else np.nan,
                    "halving_lr": half.lr, "test_diff_points": 0.0 if same else diff, "seed_sd_points": sd,
                    "noise_from": noise_from, "verdict": verdict,
                    **_proxy_columns(proxy_choice, grid.lr if grid is not None else None, test, sd)})
    return pd.DataFrame(out, columns=["dataset", "backbone", "regime", "epochs", "candidates", "rungs", "cost_runs",
                                      "overhead_runs", "grid_lr", "halving_lr", "test_diff_points", "seed_sd_points",
                                      "noise_from", "verdict", *PROXY_COLUMNS])


PROXY_COLUMNS = ("proxy_lr", "proxy_cost_runs", "proxy_overhead_runs", "proxy_test_diff_points", "proxy_verdict")


def _span(values: pd.Series) -> str:
    lo, hi = float(values["min"]), float(values["max"])
    return f"{lo:.2f}" if abs(hi - lo) < 5e-3 else f"{lo:.2f}–{hi:.2f}"


def describe_proxy_wall(overheads: pd.Series) -> str:
    """One Markdown line on :func:`proxy_wall` (empty without proxy runs)."""
    if overheads.empty:
        return ""
    over = int((overheads > DEFAULT_BUDGET + 1e-9).sum())
    return (f"The proxy rule's (`fit`'s) recorded wall time beyond the final run, on the {len(overheads)} main cells "
            "with proxy runs, in final runs (the proxies' and the losing finalist's `wall_s` over the winner's; "
            f"proxies skip the test evaluation, the finalists are full runs): median {overheads.median():.2f}, range "
            f"{_span(overheads.agg(['min', 'max']))}; {over} cell(s) over the budget of {DEFAULT_BUDGET:g}, which is "
            "stated and enforced in epochs.\n")


def describe_halving(table: pd.DataFrame) -> str:
    """Markdown summary: how often halving agreed, was within the noise, or missed, and what it cost."""
    if table.empty:
        return "- No selection cell is settled yet: halving cannot be compared with the full grid."
    counts = table["verdict"].value_counts()
    n = len(table)
    pooled = int(table["noise_from"].str.startswith("pooled").sum())
    cost = table.groupby("candidates")[["cost_runs", "overhead_runs"]].agg(["min", "max"])
    costs = "; ".join(f"{c} rates: {_span(r['cost_runs'])} ({_span(r['overhead_runs'])} beyond the final run)"
                      for c, r in cost.iterrows())
    last_rungs = table["rungs"].str.split(" → ").str[-1]  # "3@15": how many trained to the end
    finalists = "/".join(str(k) for k in sorted({int(rung.split("@")[0]) for rung in last_rungs}))
    lines = [f"- The prefix rule (every rate to a fifth of the run, the best {finalists} — as many as the budget of "
             f"{DEFAULT_BUDGET:g} runs beyond the final one allows — to the end) chose the full grid's "
             f"rate on {counts.get('same rate', 0)}/{n} cells; another rate within the seed noise on "
             f"{counts.get('within seed noise', 0)}; a rate better on test beyond the noise on "
             f"{counts.get(VERDICTS[2], 0)}; a worse one beyond the noise on {counts.get(VERDICTS[3], 0)}"
             + (f" ({counts.get('pending', 0)} pending)" if counts.get("pending", 0) else "")
             + f". Noise: each cell's seed sd, or for the {pooled} cells tuned on one seed the pooled sd of its "
               "dataset.",
             f"- Its cost in full-length runs (all candidates' epochs / one run's): {costs}; the full grid trains one "
             "full run per candidate, the final one included."]
    missed = table[table["verdict"] == VERDICTS[3]]
    for r in missed.itertuples(index=False):
        lines.append(f"- Missed: {r.dataset}/{r.backbone}/{r.regime}: halving {r.halving_lr:g} vs grid {r.grid_lr:g}, "
                     f"{r.test_diff_points:+.2f} points of test accuracy (seed sd {r.seed_sd_points:.2f}, "
                     f"{r.noise_from}).")
    return "\n".join(lines + _describe_proxies(table))


def _counts(verdicts: pd.Series) -> str:
    c = verdicts.value_counts()
    return (f"the grid's rate on {c.get(VERDICTS[0], 0)}/{len(verdicts)}, another within the seed noise on "
            f"{c.get(VERDICTS[1], 0)}, better beyond the noise on {c.get(VERDICTS[2], 0)}, worse beyond the noise on "
            f"{c.get(VERDICTS[3], 0)}" + (f" ({c.get('pending', 0)} pending)" if c.get("pending", 0) else ""))


def _describe_proxies(table: pd.DataFrame) -> list[str]:
    """The proxy rule's lines: its verdicts beside the prefix rule's on the same cells, per regime for the adapter
    (``fit``'s default), its cost, and each miss."""
    judged = table[table["proxy_verdict"] != NOT_RUN]
    if judged.empty:
        return []
    adapter = judged[judged["regime"] == "adapter"]
    lines = [f"- **Proxy rule (what `fit` uses)**, on the {len(judged)} main cells with proxy runs: "
             f"{_counts(judged['proxy_verdict'])}; the prefix rule above, on the same cells: "
             f"{_counts(judged['verdict'])}. Adapter cells (`fit`'s default): proxy "
             f"{_counts(adapter['proxy_verdict'])}; prefix {_counts(adapter['verdict'])}.",
             f"- Proxy cost beyond the final run: {_span(judged['proxy_overhead_runs'].agg(['min', 'max']))} runs in "
             f"epochs (budget {DEFAULT_BUDGET:g}); in recorded wall time: `store_time.md`, with the store's other "
             "timings."]
    for r in judged[judged["proxy_verdict"] == VERDICTS[3]].itertuples(index=False):
        lines.append(f"- Proxy missed: {r.dataset}/{r.backbone}/{r.regime}: {r.proxy_lr:g} vs grid {r.grid_lr:g}, "
                     f"{r.proxy_test_diff_points:+.2f} points of test accuracy (seed sd {r.seed_sd_points:.2f}, "
                     f"{r.noise_from}).")
    return lines


__all__ = ["NOT_RUN", "PROXY_COLUMNS", "VERDICTS", "describe_halving", "describe_proxy_wall", "halving_table",
           "proxy_scores", "proxy_wall",
           "selection_histories"]
