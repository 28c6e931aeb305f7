"""Verdicts on the paper's ablation claims (rank, placement, initialisation, sensitivity), by the rules stated in
``verdicts`` (the one place that defines a verdict and the main-results claims)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from . import elbow, stats
from .tables import knob_slices, placement_table
from .verdicts import AGREES, DISAGREES, EQUIVALENCE_POINTS, INCONCLUSIVE, PAPER, Verdict, _by_seed, _pts


# -- ablations -----------------------------------------------------------------------------------------------------
def rank_steps(rank_runs: pd.DataFrame) -> pd.DataFrame:
    """Each rank against the next (paired over seeds) and against the best rank: the evidence of the rank verdicts."""
    if rank_runs.empty:
        return pd.DataFrame(columns=["rank", "mean", "n", "next_gain", "next_low", "next_high", "vs_best",
                                     "vs_best_low", "vs_best_high", "below_best"])
    adapters = rank_runs[rank_runs["method"] == "adapter"]
    ranks = sorted(int(r) for r in adapters["rank"].unique())
    by_rank = {r: _by_seed(adapters[adapters["rank"] == r]) for r in ranks}
    best = max(ranks, key=lambda r: by_rank[r].mean()) if ranks else None
    rows = []
    for i, r in enumerate(ranks):
        step = stats.difference(by_rank[ranks[i + 1]], by_rank[r]) if i + 1 < len(ranks) else None
        gap = stats.difference(by_rank[r], by_rank[best])
        rows.append({"rank": r, "mean": by_rank[r].mean(), "n": len(by_rank[r]),
                     "next_gain": step.estimate if step else np.nan, "next_low": step.low if step else np.nan,
                     "next_high": step.high if step else np.nan, "vs_best": gap.estimate, "vs_best_low": gap.low,
                     "vs_best_high": gap.high, "below_best": r != best and gap.sign == -1})
    return pd.DataFrame(rows)


def measured_elbow(rank_runs: pd.DataFrame) -> tuple[int | None, bool]:
    """``(elbow, at_edge)`` by the one elbow rule (``elbow.measured_elbow``) over the ranks the runs hold; ``at_edge``
    when it is the largest rank of the grid (then it is no elbow). ``(None, False)`` when untestable."""
    if rank_runs.empty:
        return None, False
    ranks = sorted(int(r) for r in rank_runs.loc[rank_runs["method"] == "adapter", "rank"].unique())
    found = elbow.measured_elbow(rank_runs, ranks)
    return (found.rank, found.edge) if found.testable else (None, False)


def verdict_theory_elbow(predicted: elbow.PredictedElbow, measured: elbow.MeasuredElbow, grid) -> Verdict:
    """The theory's elbow (predicted from the task shift's spectrum) against the measured one (notebook 02)."""
    label, rule = elbow.elbow_agreement(predicted, measured, grid)
    where = measured.reason if measured.testable else f"untestable ({measured.reason})"
    return Verdict("theory_elbow", PAPER["theory_elbow"], f"predicted {predicted.span}; measured: {where}", label, rule,
                   "paper-recipe")


def verdicts_rank(rank_runs: pd.DataFrame, protocol: str = "paper-recipe") -> list[Verdict]:
    steps = rank_steps(rank_runs)
    if steps.empty:
        return []
    n = int(steps["n"].min())
    decreases = steps[steps["next_high"] < 0]
    increases = steps[steps["next_low"] > 0]
    monotone = Verdict(
        "rank_monotone", PAPER["rank_monotone"],
        f"{len(increases)} of {len(steps) - 1} doublings gain significantly, {len(decreases)} lose significantly "
        f"(n={n} seeds per rank)", DISAGREES if len(decreases) else AGREES if len(increases) else INCONCLUSIVE,
        "each doubling of r compared with a paired 95% t-interval over seeds; any significant loss disagrees, at least "
        "one significant gain and no loss agrees", protocol)
    adapters = rank_runs[rank_runs["method"] == "adapter"]
    curve = stats.concavity(np.log2(adapters["rank"].astype(float)), adapters["test_acc"])
    gains = ", ".join(f"{_pts(g)}" for g in steps["next_gain"].dropna())
    diminishing = Verdict(
        "rank_diminishing", PAPER["rank_diminishing"],
        f"gain per doubling {gains} points; curvature of accuracy in log2 r {curve.fmt()} points ({curve.how})",
        AGREES if curve.sign == -1 else DISAGREES if curve.sign == 1 else INCONCLUSIVE,
        "the quadratic coefficient of accuracy vs log2 r over all runs: 95% interval below 0 agrees, above 0 disagrees",
        protocol)
    elbow, at_edge = measured_elbow(rank_runs)
    r32 = steps[steps["rank"] == 32]
    if r32.empty:
        near = Verdict("rank_r32", PAPER["rank_r32"], "r=32 is not in the grid", INCONCLUSIVE, "needs r=32 runs", protocol)
    else:
        row = r32.iloc[0]
        best_rank = int(steps.loc[steps["mean"].idxmax(), "rank"])
        near = Verdict(
            "rank_r32", PAPER["rank_r32"],
            f"r=32 − best (r={best_rank}) = {_pts(row['vs_best'])} [{_pts(row['vs_best_low'])}, "
            f"{_pts(row['vs_best_high'])}] points; measured elbow "
            + (f"none within the grid (accuracy not yet flat at r={elbow}, its largest rank)" if at_edge else f"r={elbow}"),
            DISAGREES if row["below_best"] else AGREES,
            "r=32 agrees when its paired 95% interval against the best rank includes 0; the elbow is the smallest rank "
            "not significantly below the best, and a grid edge is no elbow", protocol)
    return [monotone, diminishing, near]


def _equivalence(d: stats.Interval, margin: float = EQUIVALENCE_POINTS / 100) -> str:
    if math.isnan(d.low):
        return INCONCLUSIVE
    if -margin <= d.low and d.high <= margin:
        return AGREES
    if d.low > margin or d.high < -margin:
        return DISAGREES
    return INCONCLUSIVE


def verdict_placement(placement_runs: pd.DataFrame, protocol: str = "paper-recipe") -> Verdict | None:
    runs = placement_runs[(placement_runs["method"] == "adapter") & (placement_runs["start"] == 0)]
    every1, every2 = runs[runs["every"] == 1], runs[runs["every"] == 2]
    if every1.empty or every2.empty:
        return None
    d = stats.difference(_by_seed(every2), _by_seed(every1))
    return Verdict("placement", PAPER["placement"], f"every=2 − every=1 = {d.fmt()} points ({d.how})", _equivalence(d),
                   f"equivalence within ±{EQUIVALENCE_POINTS:g} point: the 95% interval inside the margin agrees, "
                   "entirely outside disagrees", protocol)


def placement_costs(placement_runs: pd.DataFrame) -> str:
    """Markdown: each placement's accuracy difference (interval) and parameters against every=1/start=0, and how many
    blocks stay out of the backward graph (the speed this buys is measured in ``benchmarks/``, not here)."""
    table = placement_table(placement_runs)
    runs = placement_runs[placement_runs["method"] == "adapter"]
    ref_runs = runs[(runs["every"] == 1) & (runs["start"] == 0)]
    if table.empty or ref_runs.empty:
        return "- The reference placement (every=1, start=0) has no runs yet."
    ref = table[(table["every"] == 1) & (table["start"] == 0)].iloc[0]
    lines = []
    for _, row in table.iterrows():
        if (row["every"], row["start"]) == (1, 0):
            continue
        these = runs[(runs["every"] == row["every"]) & (runs["start"] == row["start"])]
        d = stats.difference(_by_seed(these), _by_seed(ref_runs))
        lines.append(f"- every={int(row['every'])}, start={int(row['start'])}: {d.fmt()} points vs every=1/start=0 "
                     f"({d.how}), {row['trainable_params'] / ref['trainable_params']:.2f}× the trainable parameters"
                     + (f", blocks 0–{int(row['start']) - 1} outside the backward graph." if row["start"] > 0 else "."))
    return "\n".join(lines + ["- start > 0 is beyond the paper."])


def verdicts_init(init_runs: pd.DataFrame, protocol: str = "paper-recipe") -> list[Verdict]:
    runs = init_runs[init_runs["method"] == "adapter"]
    zero, rand = runs[runs["init"] == "zero"], runs[runs["init"] == "random"]
    if zero.empty or rand.empty:
        return []
    test = stats.variance_test(_by_seed(zero), _by_seed(rand))
    if test.significant:
        var_verdict = AGREES if test.ratio < 1 else DISAGREES
    else:
        var_verdict = INCONCLUSIVE
    variance = Verdict(
        "init_variance", PAPER["init_variance"],
        f"seed sd {100 * test.sd_a:.2f} (zero, n={test.n_a}) vs {100 * test.sd_b:.2f} (random, n={test.n_b}) points; "
        f"variance ratio {test.ratio:.2f}, F-test p={test.p_value:.2g} (a ratio beyond {test.needed:.1f} or below "
        f"1/{test.needed:.1f} would be significant at this n)", var_verdict,
        "two-sided F-test of equal variances at 5%: significant and lower for zero agrees, higher disagrees", protocol)
    d = stats.difference(_by_seed(rand), _by_seed(zero))
    mean = Verdict("init_mean", PAPER["init_mean"], f"random − zero = {d.fmt()} points ({d.how})",
                   AGREES if d.sign == 1 else DISAGREES if d.sign == -1 else INCONCLUSIVE,
                   "paired 95% t-interval over seeds of random − zero: above 0 agrees, below 0 disagrees", protocol)
    return [variance, mean]


def verdict_early(steps: pd.DataFrame, epochs: float, resolution: float = 1e-4) -> Verdict | None:
    """Zero vs random init in the first updates: is there a drift to see at this init scale at all?"""
    early = steps[steps["epoch"] <= epochs] if len(steps) else steps
    if early.empty or not {"zero", "random"} <= set(early["init"]):
        return None
    first = early.sort_values("step").groupby(["init", "seed"])["loss"].first().unstack("init")
    diff = (first["random"] - first["zero"]).abs().max()
    mean = early.groupby(["init", "seed"])["loss"].mean().unstack("init")
    d = stats.difference(mean["random"], mean["zero"])
    testable = diff > resolution
    measured = (f"largest first-update loss difference random − zero over {len(first)} seeds: {diff:.2g}; mean loss "
                f"over the first {epochs:g} epoch(s), random − zero: {d.fmt(scale=1, digits=4)} ({d.how})")
    verdict = (AGREES if testable and d.sign == 1 else DISAGREES if testable and d.sign == -1 else INCONCLUSIVE)
    rule = (f"testable only if random init moves the first loss by more than {resolution:g}; then a paired 95% interval "
            "of the early mean loss above 0 (random drifts) agrees" + ("" if testable else
                                                                      " — here it does not: untestable at this init scale"))
    return Verdict("early_drift", PAPER["early_drift"], measured, verdict, rule, "paper-recipe")


def _knob_seeds(runs: pd.DataFrame, defaults: dict[str, float]) -> dict[str, dict[float, pd.Series]]:
    """Per knob and value: test accuracy by seed, over the runs that vary that knob alone."""
    return {knob: {float(v): _by_seed(part[part[knob].astype(float) == v]) for v in sorted(part[knob].astype(float).unique())}
            for knob, part in knob_slices(runs, defaults).items() if len(part)}


def verdicts_sensitivity(runs: pd.DataFrame, defaults: dict[str, float], protocol: str = "paper-recipe") -> list[Verdict]:
    """Scale and robustness: each value against another by paired 95% t-intervals over seeds (one seed: no interval,
    so inconclusive)."""
    out = []
    values = _knob_seeds(runs, defaults)
    scale = values.get("scale", {})
    if len(scale) > 1:
        largest = max(scale)
        smaller = {v: acc for v, acc in scale.items() if v != largest}
        best = max(smaller, key=lambda v: smaller[v].mean())
        d = stats.difference(scale[largest], smaller[best])
        out.append(Verdict("scale", PAPER["scale"], f"s={largest:g} − best smaller scale (s={best:g}) = {d.fmt()} points "
                           f"({d.how})", AGREES if d.sign == -1 else DISAGREES if d.sign == 1 else INCONCLUSIVE,
                           "the largest scale against the best smaller one, paired 95% t-interval over seeds: below 0 "
                           "agrees, above 0 disagrees", protocol))
    margin = EQUIVALENCE_POINTS / 100
    worse, unclear, checked, n = [], [], [], 0
    for knob in ("lr", "weight_decay"):
        accs = values.get(knob, {})
        if len(accs) < 2:
            continue
        best = max(accs, key=lambda v: accs[v].mean())
        for v, acc in accs.items():
            if v != best:
                d = stats.difference(acc, accs[best])
                n = max(n, d.n)
                checked.append(f"{knob}={v:g} − best {knob}={best:g}: {d.fmt()}")
                if d.high < -margin:
                    worse.append(f"{knob}={v:g}")
                elif math.isnan(d.low) or d.low < -margin:
                    unclear.append(f"{knob}={v:g}")
    if checked:
        verdict = DISAGREES if worse else INCONCLUSIVE if unclear else AGREES
        out.append(Verdict("robust", PAPER["robust"], "; ".join(checked) + f" points (paired over n={n} seeds)"
                           + (f"; more than {EQUIVALENCE_POINTS:g} point below the best: {', '.join(worse)}" if worse else ""),
                           verdict, f"each value of lr and weight decay against that knob's best value, paired 95% "
                           f"t-interval over seeds, with a margin of {EQUIVALENCE_POINTS:g} point: an interval entirely "
                           f"below −{EQUIVALENCE_POINTS:g} disagrees; every interval above −{EQUIVALENCE_POINTS:g} agrees",
                           protocol))
    return out


def best_values(runs: pd.DataFrame, defaults: dict[str, float]) -> str:
    """Markdown: per knob, the best value named only if it beats the runner-up beyond the seed noise (paired 95%)."""
    lines = []
    for knob, accs in _knob_seeds(runs, defaults).items():
        if len(accs) < 2:
            continue
        top, second = sorted(accs, key=lambda v: accs[v].mean(), reverse=True)[:2]
        d = stats.difference(accs[top], accs[second])
        if d.sign == 1:
            lines.append(f"- {knob}: best {top:g}, ahead of the runner-up ({second:g}) by {d.fmt()} points ({d.how}).")
        else:
            lines.append(f"- {knob}: no value beats the others beyond the seed noise: the top two ({top:g}, {second:g}) "
                         f"differ by {d.fmt()} points ({d.how}).")
    return "\n".join(lines)


__all__ = ["best_values", "measured_elbow", "placement_costs", "rank_steps", "verdict_early", "verdict_placement", "verdict_theory_elbow", "verdicts_init", "verdicts_rank", "verdicts_sensitivity"]
