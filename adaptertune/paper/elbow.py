"""The rank elbow, predicted and measured, and whether the two agree (notebook 02).

*Predicted*: for each energy threshold e, the smallest rank of the sweep grid whose top directions hold e of
the task shift's data-weighted energy: a range over e, not one number. *Measured*: the smallest grid rank
*equivalent* to the best rank (the 90% paired interval of best − rank inside ±``stats.EQUIVALENCE_POINTS``: two
one-sided tests at 5%); "not significantly below" is not enough, since few seeds make every rank look like the best.
A best rank at the grid's largest rank is no elbow (accuracy may still rise), unless that rank is a stated limit
(``limit``: the embedding width, beyond which a rank adds nothing). :func:`elbow_agreement` turns the two into
agrees / disagrees / inconclusive. The intervals are ``stats``' (paired over the seeds two ranks share).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from . import stats

ENERGIES = (0.8, 0.85, 0.9, 0.95)  # default energy thresholds of the predicted elbow
VERDICTS = ("agrees", "disagrees", "inconclusive", "not tested")


def check_energy(energy: float) -> None:
    """An energy threshold is a share in (0, 1]."""
    if isinstance(energy, bool) or not isinstance(energy, (int, float)) or not 0 < energy <= 1:
        raise ValueError(f"energy={energy!r} is not allowed: use a fraction in (0, 1]")


def parse_energies(energies: str | Sequence[float]) -> tuple[float, ...]:
    """Energy thresholds from a notebook parameter: ``"0.8, 0.9"`` (a parameters cell holds literals only) or a
    sequence (``--param energies=0.8,0.9`` arrives as a tuple); sorted, each in (0, 1], at least one."""
    values = [float(v) for v in energies.replace(",", " ").split()] if isinstance(energies, str) else list(energies)
    if not values:
        raise ValueError(f"energies={energies!r} is not allowed: give at least one threshold, e.g. '0.8, 0.9'")
    for e in values:
        check_energy(e)
    return tuple(sorted(set(values)))


@dataclass(frozen=True)
class MeasuredElbow:
    """The smallest grid rank equivalent to the best rank (TOST, paired over seeds).

    ``rank`` is that rank (None when the test cannot be run); ``edge`` says the best rank is the grid's largest (and
    no stated limit), so there is no elbow within the grid and ``rank`` is that edge; ``table`` has the per-rank tests.
    """

    table: pd.DataFrame
    rank: int | None
    edge: bool
    testable: bool
    level: float
    reason: str
    low: int | None = None  # the smallest rank not shown worse than the best by more than the margin

    @property
    def span(self) -> tuple[int, int] | None:
        """Where the elbow may lie: from the smallest rank not excluded (its ``level`` interval of best − rank does
        not lie above the margin) to the smallest rank shown equivalent. A rank neither excluded nor shown equivalent
        could be the elbow: the data cannot tell, so a verdict has to hold over the whole span."""
        if self.elbow is None:
            return None
        return (self.low if self.low is not None else self.rank, self.rank)

    @property
    def elbow(self) -> int | None:
        """The elbow inside the grid, or None (untestable, or no elbow within the grid)."""
        return self.rank if self.testable and not self.edge else None


def measured_elbow(rank_runs: pd.DataFrame, grid: Sequence[int], level: float = 0.95, limit: int | None = None,
                   margin: float = stats.EQUIVALENCE_POINTS) -> MeasuredElbow:
    """Test every rank of the grid against the best one (highest mean test accuracy), paired over shared seeds.

    A rank is *significantly below* the best when the ``level`` interval of (best − rank) lies above 0, and
    *equivalent* to it when the 90% interval lies inside ±``margin`` points. The elbow is the smallest equivalent rank;
    when the best rank is the grid's largest and below ``limit`` there is none. The test needs every grid rank with at
    least 2 seeds shared with the best rank; otherwise the elbow is untestable. ``rank_runs`` holds one
    (dataset, backbone) pair.
    """
    grid = sorted(int(r) for r in grid)
    cols = ["rank", "n", "mean_points", "sd_points", "diff_points", "diff_low", "diff_high", "tost_low", "tost_high",
            "n_pairs", "below_best", "equivalent"]
    runs = rank_runs[rank_runs["method"] == "adapter"] if "method" in rank_runs else rank_runs
    runs = runs[runs["rank"].isin(grid)] if len(runs) else runs
    if runs.empty:
        return MeasuredElbow(pd.DataFrame(columns=cols), None, False, False, level, "no adapter runs of the rank grid")
    keys = [c for c in ("dataset", "backbone") if c in runs]
    pairs = runs[keys].drop_duplicates() if keys else runs.iloc[:1]
    if len(pairs) > 1:
        raise ValueError(f"rank runs of {len(pairs)} (dataset, backbone) pairs were given: the elbow is measured on "
                         "one pair at a time (select it first)")
    acc = {int(r): part.set_index("seed")["test_acc"] * 100 for r, part in runs.groupby("rank")}
    best = max(acc, key=lambda r: acc[r].mean())
    rows = []
    for r in sorted(acc):
        shared = acc[best].index.intersection(acc[r].index)
        if r == best:
            diff = tost = stats.Interval(0.0, 0.0, 0.0, len(acc[r]), "the best rank")
        else:
            diff = stats.difference(acc[best].loc[shared], acc[r].loc[shared], level)
            tost = stats.equivalence(acc[best].loc[shared], acc[r].loc[shared], margin).tost
        rows.append({"rank": r, "n": len(acc[r]), "mean_points": acc[r].mean(), "sd_points": acc[r].std(ddof=1),
                     "diff_points": diff.estimate, "diff_low": diff.low, "diff_high": diff.high, "tost_low": tost.low,
                     "tost_high": tost.high, "n_pairs": len(shared), "below_best": bool(diff.low > 0),
                     "equivalent": bool(-margin <= tost.low and tost.high <= margin)})
    table = pd.DataFrame(rows, columns=cols)
    missing = [r for r in grid if r not in acc]
    thin = table.loc[(table["n_pairs"] < 2) & (table["rank"] != best), "rank"].tolist()
    if missing or thin or len(acc[best]) < 2:
        why = [f"ranks {missing} of the grid have no runs"] if missing else []
        if len(acc[best]) < 2:
            why.append(f"the best rank r={best} has {len(acc[best])} seed: a paired test needs at least 2")
        elif thin:
            why.append(f"ranks {thin} share fewer than 2 seeds with the best rank r={best}")
        return MeasuredElbow(table, None, False, False, level, "; ".join(why))
    if best == grid[-1] and (limit is None or best < limit):
        return MeasuredElbow(table, best, True, True, level,
                             f"the best rank is the grid's largest (r={best}): no elbow within the grid")
    rank = int(table.loc[table["equivalent"], "rank"].min())
    low = int(table.loc[~(table["diff_low"] > margin), "rank"].min())
    why = (f"r={rank} is the smallest rank within ±{margin:g} point of the best (r={best}; 90% paired interval)"
           + (f"; r={low} is not shown worse than the best by more than ±{margin:g} ({level:.0%} interval), so "
              f"the elbow lies in r={low}–{rank}" if low < rank else "")
           + (f"; the best rank is the stated limit r={limit}" if best == limit else ""))
    return MeasuredElbow(table, rank, False, True, level, why, low)


@dataclass(frozen=True)
class PredictedElbow:
    """Per energy threshold e, the smallest grid rank whose top directions hold e of the pooled weighted energy
    (``rank_weighted``) and of the plain energy (``rank_plain``); ``low``/``high`` is the weighted range over the
    thresholds. A threshold the grid cannot reach has rank NA; then ``high`` is None and ``beyond`` True."""

    table: pd.DataFrame
    low: int | None
    high: int | None
    beyond: bool
    n_runs: int
    n_blocks: int

    @property
    def span(self) -> str:
        """``r=4–8``, ``r=8`` (one rank for every threshold), ``r=16 to beyond the grid``, or ``none``."""
        if self.low is None:
            return "none"
        if self.beyond:
            return f"r={self.low} to beyond the grid"
        return f"r={self.low}" if self.low == self.high else f"r={self.low}–{self.high}"


def _first_rank(captured: pd.Series, energy: float) -> int | None:
    hit = captured.index[captured.to_numpy() >= energy - 1e-12]
    return int(hit.min()) if len(hit) else None


def predicted_elbow(tails: pd.DataFrame, grid: Sequence[int], energies: Sequence[float] = ENERGIES) -> PredictedElbow:
    """The predicted elbow as a range: for each ``e`` in ``energies`` the smallest grid rank holding ``e`` of the
    weighted energy, pooled over every block and run in ``tails`` (a rank-r adapter on every block loses
    ``Σ_blocks tail_w(r)`` in expected squared error); the plain spectrum's ranks beside it for comparison."""
    for e in energies:
        check_energy(e)
    if "kind" in tails and tails["kind"].nunique() > 1:
        raise ValueError(f"tails hold several kinds of map {sorted(tails['kind'].unique())}: pass the task shift's rows only")
    if tails.empty:
        return PredictedElbow(pd.DataFrame(columns=["energy", "rank_weighted", "rank_plain"]), None, None, False, 0, 0)
    grid = sorted(int(r) for r in grid)
    part = tails[tails["rank"].isin(grid)]
    pooled = part.groupby("rank")[["tail_w", "energy_w"]].sum()
    captured_w = 1 - pooled["tail_w"] / pooled["energy_w"]
    # plain: the mean of per-block shares (‖M‖_F² is no error in output units, so there is nothing to pool)
    captured = 1 - part.groupby("rank")["tail_share"].mean()
    rows = [{"energy": e, "rank_weighted": _first_rank(captured_w, e), "rank_plain": _first_rank(captured, e)}
            for e in energies]
    table = pd.DataFrame(rows).astype({"rank_weighted": "Int64", "rank_plain": "Int64"})
    weighted = table["rank_weighted"]
    beyond = bool(weighted.isna().any())
    low = None if weighted.isna().all() else int(weighted.min())
    n_runs = tails["run_id"].nunique() if "run_id" in tails else 1
    return PredictedElbow(table, low, None if beyond else int(weighted.max()), beyond, n_runs,
                          len(tails.groupby([c for c in ("run_id", "block") if c in tails]).size()))


def elbow_agreement(predicted: PredictedElbow, measured: MeasuredElbow, grid: Sequence[int]) -> tuple[str, str]:
    """``(verdict, rule)``: agrees when every rank the measured elbow may be (:attr:`MeasuredElbow.span`) lies inside
    the predicted range, disagrees when none does, and is inconclusive when the span straddles the range's edge (the
    data cannot tell whether the elbow is inside).

    "No elbow within the grid" is the position ≥ the grid's largest rank: it agrees only with a predicted range
    that reaches the grid edge (or beyond). Inconclusive when either side could not be computed.
    """
    edge = max(int(r) for r in grid)
    if predicted.low is None:
        return "inconclusive", "no task shift was measured, so there is no predicted elbow"
    if not measured.testable:
        return "inconclusive", f"the measured elbow cannot be tested: {measured.reason}"
    high = float("inf") if predicted.beyond else predicted.high
    if measured.edge:
        inside = outside = None
        ok = high >= edge
        where = f"no elbow within the grid (r ≤ {edge})"
        verdict, lies = ("agrees", "lies") if ok else ("disagrees", "does not lie")
    else:
        low, rank = measured.span
        inside = predicted.low <= low and rank <= high
        outside = rank < predicted.low or low > high
        where = f"r={rank}" if low == rank else f"r={low}–{rank} (the data cannot tell which)"
        verdict, lies = ("agrees", "lies") if inside else ("disagrees", "does not lie") if outside else \
            ("inconclusive", "straddles the edge of")
    rule = (f"measured {where} {lies} {'' if lies == 'straddles the edge of' else 'inside '}the predicted range "
            f"{predicted.span} (agrees iff every rank the elbow may be lies inside, disagrees iff none does; no elbow "
            "within the grid counts as the grid's largest rank or above)")
    return verdict, rule


__all__ = ["ENERGIES", "VERDICTS", "MeasuredElbow", "PredictedElbow", "check_energy", "elbow_agreement", "measured_elbow",
           "parse_energies", "predicted_elbow"]
