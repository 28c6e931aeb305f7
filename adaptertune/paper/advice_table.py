"""The rank advisor judged against the rank sweeps: advised rank vs measured elbow, accuracy lost, hit rate.

Per (dataset, backbone): the best rank is the one with the highest mean test accuracy over seeds; the measured elbow
is the smallest rank whose paired difference to the best (90% t-interval over seeds) lies inside ±``MARGIN_POINTS``
(equivalent to the best); a best rank at the grid's top edge has no elbow (the best may lie beyond) and is flagged.
The advice *hits* when the advised rank is itself equivalent to the best by the same test, *misses* when its paired
interval lies wholly below −margin, and is *undecided* otherwise (the seeds cannot tell). The accuracy lost by taking
the advice is best − advised with a paired 95% interval. Test accuracy judges the advice; the advice never saw it.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ..store import runs as run_store
from .advisor import MARGIN_POINTS, Advice, advice_of_records, probe_configs
from .protocols import protocol
from .stats import difference

EQUIVALENCE_LEVEL = 0.90  # a 90% interval inside ±margin: two one-sided tests at 5%
LOSS_LEVEL = 0.95


def _by_seed(rows: pd.DataFrame, rank: int) -> pd.Series:
    part = rows[rows["rank"] == rank]
    return part.set_index("seed")["test_acc"].astype(float)


def _equivalent(a: pd.Series, b: pd.Series, margin: float) -> str:
    """'equivalent' (90% paired interval inside ±margin), 'worse' (wholly below −margin) or 'undecided'."""
    iv = difference(a, b, level=EQUIVALENCE_LEVEL)
    if math.isnan(iv.low):
        return "equivalent" if a.index.equals(b.index) and (a - b).abs().max() == 0 else "undecided"
    if -margin <= iv.low and iv.high <= margin:
        return "equivalent"
    return "worse" if iv.high < -margin else "undecided"


def judged_table(advice: Sequence[Advice], rank_rows: pd.DataFrame,
                 margin_points: float = MARGIN_POINTS) -> pd.DataFrame:
    """One row per advised pair; ``rank_rows``: adapter runs of the rank sweep (dataset, backbone, rank, seed,
    test_acc; other methods are ignored). Pairs without sweep runs are 'pending'; a pair whose sweep lacks the advised
    rank (the sweep's ranks are ``Protocol.pair_ranks`` off the ablation pair) is 'not swept': nothing to judge by."""
    margin = margin_points / 100
    rows = rank_rows[rank_rows["method"] == "adapter"] if "method" in rank_rows else rank_rows
    out = []
    for a in advice:
        part = rows[(rows["dataset"] == a.dataset) & (rows["backbone"] == a.backbone)]
        base = {"dataset": a.dataset, "backbone": a.backbone, "advised_rank": a.rank, "every2_advised": a.every2,
                "probe_cost_share": a.cost_share}
        if part.empty or a.rank not in set(part["rank"]):
            out.append({**base, "verdict": "pending" if part.empty else "not swept"})
            continue
        ranks = sorted(int(r) for r in part["rank"].unique())
        means = part.groupby("rank")["test_acc"].mean()
        best = int(means.idxmax())
        at_edge = best == ranks[-1]
        equivalent = [r for r in ranks if _equivalent(_by_seed(part, r), _by_seed(part, best), margin) == "equivalent"]
        elbow = None if at_edge else min(equivalent, default=best)
        loss = difference(_by_seed(part, best), _by_seed(part, a.rank), level=LOSS_LEVEL)
        state = _equivalent(_by_seed(part, a.rank), _by_seed(part, best), margin)
        verdict = {"equivalent": "hit", "worse": "miss", "undecided": "undecided"}[state]
        out.append({**base, "best_rank": best, "best_at_grid_edge": at_edge, "measured_elbow": elbow,
                    "loss_points": 100 * loss.estimate, "loss_low": 100 * loss.low, "loss_high": 100 * loss.high,
                    "n_seeds": loss.n, "verdict": verdict})
    return pd.DataFrame(out, columns=["dataset", "backbone", "advised_rank", "every2_advised", "measured_elbow",
                                      "best_rank", "best_at_grid_edge", "loss_points", "loss_low", "loss_high",
                                      "n_seeds", "probe_cost_share", "verdict"])


def describe_judged(table: pd.DataFrame, margin_points: float = MARGIN_POINTS) -> str:
    """Markdown: the measured hit rate, each miss, grid-edge pairs, and the probe's cost."""
    decided = table[table["verdict"].isin(["hit", "miss"])]
    if table.empty or (table["verdict"] == "pending").all():
        return "- The rank advisor is not judged yet: the probe runs or the rank sweeps are missing."
    hits = int((table["verdict"] == "hit").sum())
    lines = [f"- Hit rate: the advised rank was equivalent to the best rank (paired {int(100 * EQUIVALENCE_LEVEL)}% "
             f"interval inside ±{margin_points:g} point) on {hits} of {len(table)} pairs ({len(decided)} decided; "
             f"{int((table['verdict'] == 'undecided').sum())} undecided, {int((table['verdict'] == 'pending').sum())} "
             f"pending, {int((table['verdict'] == 'not swept').sum())} advised a rank their sweep does not run)."]
    for r in table[table["verdict"] == "miss"].itertuples(index=False):
        lines.append(f"- Miss: {r.dataset}/{r.backbone}: advised r={r.advised_rank}, best r={r.best_rank}; taking the "
                     f"advice loses {r.loss_points:+.2f} [{r.loss_low:+.2f}, {r.loss_high:+.2f}] points.")
    edge = table[table.get("best_at_grid_edge", pd.Series(dtype=bool)).fillna(False).astype(bool)]
    if len(edge):
        lines.append(f"- {len(edge)} pair(s) peak at the grid's largest rank (no elbow within the grid): "
                     + ", ".join(f"{d}/{b}" for d, b in edge[["dataset", "backbone"]].itertuples(index=False)) + ".")
    share = table["probe_cost_share"].max()
    lines.append(f"- The probe costs at most {100 * share:.1f}% of the rank sweep it replaces (every rank × every "
                 "seed).")
    return "\n".join(lines)


def stored_advice(profile: str, pairs: Sequence[tuple[str, str]] | None = None,
                  root: str | Path | None = None) -> list[Advice]:
    """The advice of every pair whose probe runs are finished in the store (nothing is trained)."""
    p = protocol(profile)
    out = []
    for dataset, backbone in pairs or [(d, b) for b in p.backbones for d in p.datasets]:
        configs = probe_configs(dataset, backbone, profile)
        records = [run_store.read_result(c.run_id, root) for c in configs]
        if all(r is not None and r.get("status") == "finished" for r in records):
            out.append(advice_of_records(dataset, backbone, profile, configs, records, root))
    return out


__all__ = ["EQUIVALENCE_LEVEL", "MARGIN_POINTS", "describe_judged", "judged_table", "stored_advice"]
