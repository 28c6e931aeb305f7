"""Verdicts on the paper's ablation claims (rank, placement, initialisation, sensitivity), by the rules stated in
``verdicts`` (the one place that defines a verdict and the main-results claims). The rank grid may hold several
(dataset, backbone) pairs: each is judged alone and the pairs combined (``verdicts.combine``)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..adapter import AdapterConfig
from ..backbones import backbone_shape
from . import elbow, stats
from .tables import knob_slices, placement_table
from .verdicts import (AGREES, DISAGREES, EQUIVALENCE_POINTS, INCONCLUSIVE, NOT_TESTED, PAPER, Verdict, _by_seed, _pts,
                       combine, not_tested)

EQUIVALENCE_RULE = (f"equivalent: the 90% paired interval inside ±{EQUIVALENCE_POINTS:g} point (two one-sided tests at "
                    f"5%); different: the 95% interval entirely beyond ±{EQUIVALENCE_POINTS:g}; otherwise inconclusive")


def rank_limit(backbone: str) -> int | None:
    """The largest meaningful adapter rank of a backbone: its embedding width (None for an unknown name)."""
    try:
        return int(backbone_shape(backbone)[1])
    except (ValueError, KeyError, RuntimeError):  # timm: an unknown model name
        return None


def rank_pairs(rank_runs: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """``("dataset/backbone", runs)`` per pair of the rank grid (one unnamed pair without those columns)."""
    if rank_runs.empty:
        return []
    if not {"dataset", "backbone"} <= set(rank_runs.columns):
        return [("", rank_runs)]
    return [(f"{d}/{b}", part) for (d, b), part in rank_runs.groupby(["dataset", "backbone"], sort=True)]


def _outcome(sign: int) -> str:
    return AGREES if sign == 1 else DISAGREES if sign == -1 else INCONCLUSIVE


# -- ablations -----------------------------------------------------------------------------------------------------
def rank_steps(rank_runs: pd.DataFrame) -> pd.DataFrame:
    """Each rank against the next (paired over seeds) and against the best rank: the evidence of the rank verdicts.
    Several pairs of the rank grid: one block of rows per pair, with ``dataset`` and ``backbone`` columns."""
    pairs = rank_pairs(rank_runs)
    if len(pairs) > 1:
        parts = [_rank_steps(part).assign(dataset=part["dataset"].iloc[0], backbone=part["backbone"].iloc[0])
                 for _, part in pairs]
        return pd.concat(parts, ignore_index=True)
    return _rank_steps(rank_runs)


def _rank_steps(rank_runs: pd.DataFrame, level: float = stats.LEVEL) -> pd.DataFrame:
    if rank_runs.empty:
        return pd.DataFrame(columns=["rank", "mean", "n", "next_gain", "next_low", "next_high", "vs_best",
                                     "vs_best_low", "vs_best_high", "below_best"])
    adapters = rank_runs[rank_runs["method"] == "adapter"]
    ranks = sorted(int(r) for r in adapters["rank"].unique())
    by_rank = {r: _by_seed(adapters[adapters["rank"] == r]) for r in ranks}
    best = max(ranks, key=lambda r: by_rank[r].mean()) if ranks else None
    rows = []
    for i, r in enumerate(ranks):
        step = stats.difference(by_rank[ranks[i + 1]], by_rank[r], level) if i + 1 < len(ranks) else None
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
    limit = rank_limit(str(rank_runs["backbone"].iloc[0])) if "backbone" in rank_runs else None
    found = elbow.measured_elbow(rank_runs, ranks, limit=limit)
    return (found.rank, found.edge) if found.testable else (None, False)


def verdict_theory_elbow(predicted: elbow.PredictedElbow, measured: elbow.MeasuredElbow, grid,
                         protocol: str = "paper-recipe") -> Verdict:
    """The theory's elbow (predicted from the task shift's spectrum) against the measured one (notebook 02)."""
    if measured.table.empty:
        return not_tested("theory_elbow", f"no measured elbow: {measured.reason}", protocol)
    label, rule = elbow.elbow_agreement(predicted, measured, grid)
    where = measured.reason if measured.testable else f"untestable ({measured.reason})"
    return Verdict("theory_elbow", PAPER["theory_elbow"], f"predicted {predicted.span}; measured: {where}", label, rule,
                   protocol)


def verdicts_rank(rank_runs: pd.DataFrame, protocol: str = "paper-recipe") -> list[Verdict]:
    """Claims 8–10 per pair of the rank grid, combined over pairs (one pair: its own verdicts)."""
    per_pair = [(name, _verdicts_rank_pair(part, protocol)) for name, part in rank_pairs(rank_runs)]
    per_pair = [(name, found) for name, found in per_pair if found]
    if len(per_pair) <= 1:
        return per_pair[0][1] if per_pair else []
    return [combine(key, [(name, found[i]) for name, found in per_pair], protocol)
            for i, key in enumerate(("rank_monotone", "rank_diminishing", "rank_r32"))]


def _verdicts_rank_pair(rank_runs: pd.DataFrame, protocol: str) -> list[Verdict]:
    adapters = rank_runs[rank_runs["method"] == "adapter"]
    tests = max(1, adapters["rank"].nunique() - 1)  # one paired test per step up the grid: a family, so Bonferroni
    level = 1 - (1 - stats.LEVEL) / tests
    steps = _rank_steps(rank_runs, level)  # one pair: its steps, each interval at the family-wise level
    if steps.empty:
        return []
    n = int(steps["n"].min())
    decreases = steps[steps["next_high"] < 0]
    increases = steps[steps["next_low"] > 0]
    monotone = Verdict(
        "rank_monotone", PAPER["rank_monotone"],
        f"{len(increases)} of {tests} steps up the rank grid gain significantly, {len(decreases)} lose significantly "
        f"(each at {100 * level:.1f}%: Bonferroni over the {tests} steps; n={n} seeds per rank)",
        DISAGREES if len(decreases) else AGREES if len(increases) else INCONCLUSIVE,
        "each step up the rank grid compared with a paired t-interval over seeds at 95% family-wise (Bonferroni over "
        "the steps: any one step's chance gain must not decide); any significant loss disagrees, at least one "
        "significant gain and no loss agrees", protocol)
    curve = stats.concavity(np.log2(adapters["rank"].astype(float)), adapters["test_acc"])
    gains = ", ".join(f"{_pts(g)}" for g in steps["next_gain"].dropna())
    diminishing = Verdict(
        "rank_diminishing", PAPER["rank_diminishing"],
        f"gain per step up the rank grid (r {'→'.join(str(int(r)) for r in steps['rank'])}) {gains} points; "
        f"curvature of accuracy in log2 r {curve.fmt()} points ({curve.how})",
        _outcome(-curve.sign),
        "the quadratic coefficient of accuracy vs log2 r over all runs: 95% interval below 0 agrees, above 0 disagrees",
        protocol)
    return [monotone, diminishing, _verdict_r32(rank_runs, steps, protocol)]


def _verdict_r32(rank_runs: pd.DataFrame, steps: pd.DataFrame, protocol: str) -> Verdict:
    """Claim 10 by equivalence with the best rank; a best rank at the grid's edge leaves the peak unknown."""
    if (steps["rank"] != 32).all():
        return not_tested("rank_r32", "r=32 is not in the grid", protocol)
    found_elbow, at_edge = measured_elbow(rank_runs)
    adapters = rank_runs[rank_runs["method"] == "adapter"]
    best_rank = int(steps.loc[steps["mean"].idxmax(), "rank"])
    by_rank = {r: _by_seed(adapters[adapters["rank"] == r]) for r in (32, best_rank)}
    eq = stats.equivalence(by_rank[32], by_rank[best_rank])
    elbow_text = (f"none within the grid (the best rank r={found_elbow} is its largest)" if at_edge
                  else f"r={found_elbow}" if found_elbow is not None else "untestable")
    if best_rank == 32:  # the highest mean is one noisy reading: r=32 must not be shown worse than the runner-up
        others = steps.loc[steps["rank"] != 32].sort_values("mean", ascending=False)
        if others.empty:
            verdict, what = INCONCLUSIVE, "r=32 is the only rank"
        else:
            runner = int(others["rank"].iloc[0])
            eq = stats.equivalence(by_rank[32], _by_seed(adapters[adapters["rank"] == runner]))
            non_inferior = eq.tost.low >= -eq.margin
            what = f"r=32 is the best rank; r=32 − runner-up (r={runner}) = {eq.fmt()} points"
            verdict = INCONCLUSIVE if at_edge or not non_inferior else AGREES
    else:
        what = f"r=32 − best (r={best_rank}) = {eq.fmt()} points"
        verdict = (DISAGREES if eq.outcome == -1 else INCONCLUSIVE if at_edge
                   else AGREES if eq.outcome == 1 else INCONCLUSIVE)
    return Verdict("rank_r32", PAPER["rank_r32"], f"{what}; measured elbow {elbow_text}", verdict,
                   f"r=32 against the best rank, {EQUIVALENCE_RULE}; when r=32 has the highest mean it agrees only "
                   "if its 90% paired interval against the runner-up lies above −margin (the top mean is itself a "
                   "noisy reading); when the best rank is the grid's largest (and below the embedding width) the "
                   "peak may lie beyond the grid, so r=32 can only disagree",
                   protocol)


def verdict_placement(placement_runs: pd.DataFrame, protocol: str = "paper-recipe") -> Verdict | None:
    runs = placement_runs[(placement_runs["method"] == "adapter") & (placement_runs["start"] == 0)]
    every1, every2 = runs[runs["every"] == 1], runs[runs["every"] == 2]
    if every1.empty or every2.empty:
        return None
    eq = stats.equivalence(_by_seed(every2), _by_seed(every1))
    return Verdict("placement", PAPER["placement"], f"every=2 − every=1 = {eq.fmt()} points", _outcome(eq.outcome),
                   f"every=2 against every=1, {EQUIVALENCE_RULE}", protocol)


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


def _init_pair(runs: pd.DataFrame, std: float) -> tuple[pd.Series, pd.Series]:
    """Test accuracy by seed of zero init and of random init at ``std``, over the seeds both have."""
    zero = _by_seed(runs[runs["init"] == "zero"])
    random = runs[(runs["init"] == "random") & np.isclose(runs["init_std"].astype(float), std)]
    rand = _by_seed(random)
    shared = zero.index.intersection(rand.index)
    return zero.loc[shared], rand.loc[shared]


def verdicts_init(init_runs: pd.DataFrame, protocol: str = "paper-recipe",
                  paper_std: float = AdapterConfig.init_std) -> list[Verdict]:
    """Claims 13–14: zero vs random init over the seeds both have (the same seed: the same data order and head init,
    so the arms are paired and the variance test must be too). The verdict is decided at the paper's "small random"
    sigma (its code's 1e-4); every other sigma of the grid is reported beside it, as evidence of scale, not a verdict."""
    runs = init_runs[init_runs["method"] == "adapter"]
    zero, rand = _init_pair(runs, paper_std)
    if zero.empty:
        return []
    others = sorted(float(s) for s in runs.loc[runs["init"] == "random", "init_std"].astype(float).unique()
                    if not np.isclose(s, paper_std))
    tests = {std: stats.pitman_morgan(*(x.to_numpy() for x in _init_pair(runs, std))) for std in others}
    also = "".join(f"; at sigma={std:g}: sd {100 * t.sd_a:.2f} (zero) vs {100 * t.sd_b:.2f} (random), ratio "
                   f"{t.ratio:.2f}, p={t.p_value:.2g} (n={t.n})" for std, t in tests.items())
    test = stats.pitman_morgan(zero.to_numpy(), rand.to_numpy())
    var_verdict = (AGREES if test.ratio < 1 else DISAGREES) if test.significant else INCONCLUSIVE
    variance = Verdict(
        "init_variance", PAPER["init_variance"],
        f"at sigma={paper_std:g}: seed sd {100 * test.sd_a:.2f} (zero) vs {100 * test.sd_b:.2f} (random) points over "
        f"n={test.n} paired seeds; variance ratio {test.ratio:.2f}, Pitman–Morgan r={test.r:+.2f}, t={test.t:+.2f}, "
        f"p={test.p_value:.2g}{also}",
        var_verdict, f"Pitman–Morgan test of equal variances over paired seeds at 5% (two-sided), at the paper's sigma "
        f"{paper_std:g}: significant and lower for zero agrees, higher disagrees", protocol)
    d = stats.difference(rand, zero)
    more = "".join(f"; at sigma={std:g}: {stats.difference(*_init_pair(runs, std)[::-1]).fmt()} points"
                   for std in others)
    mean = Verdict("init_mean", PAPER["init_mean"],
                   f"random − zero at sigma={paper_std:g} = {d.fmt()} points ({d.how}){more}", _outcome(d.sign),
                   "paired 95% t-interval over seeds of random − zero at the paper's sigma: above 0 agrees, below 0 "
                   "disagrees", protocol)
    return [variance, mean]


def verdict_early(steps: pd.DataFrame, epochs: float, resolution: float = 1e-4,
                  protocol: str = "paper-recipe") -> Verdict | None:
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
    verdict = _outcome(d.sign) if testable else NOT_TESTED
    rule = (f"testable only if random init moves the first loss by more than {resolution:g}; then a paired 95% interval "
            "of the early mean loss above 0 (random drifts) agrees"
            + ("" if testable else " — here it does not: not tested at this init scale"))
    return Verdict("early_drift", PAPER["early_drift"], measured, verdict, rule, protocol)


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
        # against the recipe's own scale (fixed before the runs), not the best smaller one: picking the comparator
        # after seeing the results would favour agreement
        default = float(defaults.get("scale", min(scale)))
        base = default if default in scale and default != largest else min(v for v in scale if v != largest)
        d = stats.difference(scale[largest], scale[base])
        out.append(Verdict("scale", PAPER["scale"], f"s={largest:g} − the recipe's scale (s={base:g}) = {d.fmt()} "
                           f"points ({d.how})", _outcome(-d.sign),
                           "the largest scale against the recipe's (fixed before the runs; the smallest when the "
                           "recipe's is not in the grid), paired 95% t-interval over seeds: below 0 agrees, above 0 "
                           "disagrees", protocol))
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
