"""Every comparison with the paper, decided in code: ``agrees``, ``disagrees``, ``inconclusive`` or ``not tested``, with
the test or interval that decided it and the n it rests on. The notebooks display these; the suite collects them into
the claims table (``claims``). If the numbers change, the verdicts change with them; nothing here is typed by hand but
the paper's own claims (``PAPER``) and the rules.

Rules in one place (``stats`` computes the intervals; 95%, Student t; docs/notebooks.md states them for readers):
- the main comparison's unit is the backbone *family*: mini seed s trains on pretraining replicate s, so a paired
  interval over seeds is an interval over pretraining runs and n counts backbones (``tables.by_family``);
- a per-pair comparison counts as a win or a loss only when its paired interval excludes 0;
- "beats X on most pairs" agrees when the wins are a strict majority of the pairs, disagrees when the losses are at
  least half, and is inconclusive otherwise;
- "near", "nearly equal" and "the elbow" need *evidence of equivalence*: the 90% paired interval inside
  ±``EQUIVALENCE_POINTS`` (two one-sided tests at 5%); a 95% interval entirely beyond the margin disagrees; a
  difference that is merely not significant is inconclusive, never "agrees";
- an elbow is the smallest rank equivalent to the best rank; a best rank at the grid's largest rank is no elbow
  (accuracy may still rise beyond it) unless that rank is a stated limit (the embedding width);
- "full FT wins where the shift is large": the slope of full FT's lead over pairs against the measured shift
  (Fréchet distance of frozen features to the source's, relative to the backbone's mean over datasets);
- a variance difference between paired arms needs the Pitman–Morgan test to reject equality;
- a "best" value of a knob is named only when it beats the runner-up by more than the seed noise allows;
- a claim without runs (or whose runs cannot test it) is ``not tested``, a fourth outcome, never ``inconclusive``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd

from ..backbones import backbone_shape
from . import stats
from .stats import EQUIVALENCE_POINTS
from .tables import by_family, gap_per_seed, pair_differences, replication_unit

AGREES, DISAGREES, INCONCLUSIVE, NOT_TESTED = "agrees", "disagrees", "inconclusive", "not tested"
OUTCOMES = (AGREES, DISAGREES, INCONCLUSIVE, NOT_TESTED)

# The paper's reported findings (PAPER.md), quoted beside what the runs measure.
PAPER = {
    "params": "adapters ≈ 0.917% of full fine-tuning's parameters on average over the 15 core pairs (the '0.92%')",
    "beats_head": "AdapterTune beats head-only on every core pair (15/15), by +14.9 points on average",
    "beats_full": "AdapterTune beats full fine-tuning on most core pairs (10/15)",
    "full_wins_far": "where full fine-tuning wins, the domain shift is large (SVHN, Food101)",
    "full_wins_small": "full fine-tuning's lead is widest on the smallest backbone (DeiT-T)",
    "extended": "AdapterTune beats head-only on every extended pair",
    "gap": "adapters overfit less than full fine-tuning (a smaller train − test gap: the low-rank constraint regularises)",
    "rank_monotone": "accuracy rises with rank",
    "rank_diminishing": "with diminishing returns (an elbow)",
    "rank_r32": "r=32 is near the peak",
    "theory_elbow": "the elbow sits where the task shift's (data-weighted) spectrum has decayed: rank predicted from theory",
    "placement": "adapters on every block (every=1) and on every other block (every=2) are nearly equal",
    "init_variance": "zero init has a lower seed variance than small random init (std 0.02 vs 0.10)",
    "init_mean": "small random init has a slightly higher mean",
    "early_drift": "zero init starts exactly at the pretrained function: no early drift",
    "scale": "a larger adapter scale s costs accuracy",
    "robust": "every learning rate and weight decay of the grid stays within a small margin of the best",
}


@dataclass(frozen=True)
class Verdict:
    """One claim of the paper against one protocol's runs."""

    key: str
    claim: str
    measured: str
    verdict: str
    rule: str
    protocol: str = "—"

    def markdown(self) -> str:
        where = f" ({self.protocol})" if self.protocol != "—" else ""
        return f"- **{self.verdict}**{where} — paper: {self.claim}. Measured: {self.measured}. Rule: {self.rule}."

    def row(self) -> dict:
        return asdict(self)


def not_tested(key: str, why: str, protocol: str = "—") -> Verdict:
    """A claim the runs cannot decide because they do not test it (no runs, or runs that cannot move the measure)."""
    return Verdict(key, PAPER[key], f"not tested: {why}", NOT_TESTED, "a claim needs runs that can test it", protocol)


def combine(key: str, parts: list[tuple[str, Verdict]], protocol: str = "paper-recipe") -> Verdict:
    """One verdict from per-pair ones (``(pair name, verdict)``): agrees when every tested pair agrees, disagrees when
    any disagrees, not tested when none was tested, inconclusive otherwise; each pair's evidence is kept."""
    tested = [v for _, v in parts if v.verdict != NOT_TESTED]
    outcomes = {v.verdict for v in tested}
    verdict = (NOT_TESTED if not tested else DISAGREES if DISAGREES in outcomes
               else AGREES if outcomes == {AGREES} else INCONCLUSIVE)
    measured = "; ".join(f"{name}: {v.verdict} — {v.measured}" for name, v in parts)
    ruled = tested or [v for _, v in parts]  # the rule of a pair that was decided, not of one that was not tested
    rule = (ruled[0].rule if ruled else "") + ("; over pairs: every tested pair must agree, one disagreeing pair "
                                               "disagrees" if len(parts) > 1 else "")
    return Verdict(key, PAPER[key], measured, verdict, rule, protocol)


def markdown(verdicts: list[Verdict]) -> str:
    """Bullets for a notebook cell."""
    return "\n".join(v.markdown() for v in verdicts) if verdicts else "- No runs to judge yet."


def _pts(x: float, digits: int = 2) -> str:
    return f"{100 * x:+.{digits}f}"


def _by_seed(df: pd.DataFrame, metric: str = "test_acc") -> pd.Series:
    return df.groupby("seed")[metric].mean()


# -- per-pair comparisons ------------------------------------------------------------------------------------------
def _pair_list(table: pd.DataFrame, outcome: int) -> str:
    hits = table[table["outcome"] == outcome]
    return ", ".join(f"{d}/{b} {_pts(x)} [{_pts(lo)}, {_pts(hi)}]"
                     for d, b, x, lo, hi in hits[["dataset", "backbone", "diff", "low", "high"]].itertuples(index=False))


def _n_text(table: pd.DataFrame, unit: str = "seeds") -> str:
    ns = sorted(set(table["n"]))
    return f"n={ns[0]} {unit} per pair" if len(ns) == 1 else f"n={ns} {unit} per pair"


def verdict_beats(df: pd.DataFrame, other: str, key: str, protocol: str, every_pair: bool) -> Verdict | None:
    """AdapterTune vs ``other`` pair by pair; ``every_pair``: the claim is about all pairs, else about most."""
    table = pair_differences(df, "adapter", other)
    if table.empty:
        return None
    wins, losses, n = int((table["outcome"] == 1).sum()), int((table["outcome"] == -1).sum()), len(table)
    undecided = n - wins - losses
    measured = (f"ahead on {wins}/{n} pairs, behind on {losses}, undecided on {undecided} (mean difference "
                f"{_pts(table['diff'].mean())} points over pairs; {_n_text(table, replication_unit(df))})")
    if losses:
        measured += f"; behind on {_pair_list(table, -1)}"
    if every_pair:
        verdict = AGREES if wins == n else DISAGREES if losses else INCONCLUSIVE
        rule = ("every pair's paired 95% t-interval (over backbone replicates where there are several) must exclude 0 "
                "on the adapter's side; one pair on the other side disagrees")
    else:
        verdict = AGREES if wins > n / 2 else DISAGREES if losses >= n / 2 else INCONCLUSIVE
        rule = ("a pair counts when its paired 95% t-interval (over backbone replicates where there are several) "
                "excludes 0; agrees with wins on a strict majority of pairs, disagrees with losses on at least half")
    return Verdict(key, PAPER[key], measured, verdict, rule, protocol)


def shift_leads(df: pd.DataFrame, shifts: pd.DataFrame) -> pd.DataFrame:
    """Per pair: full FT's lead over the adapter (fractions, paired interval) beside the measured shift
    (``frechet_to_source``) and the shift relative to the backbone's mean over its datasets (Fréchet distances of
    backbones of different widths are not on one scale; their ratios are)."""
    lead = pair_differences(df, "full", "adapter")
    cols = ["dataset", "backbone", "frechet_to_source"]
    out = lead.merge(shifts[cols].dropna(), on=["dataset", "backbone"], how="inner")
    out["relative_shift"] = out["frechet_to_source"] / out.groupby("backbone")["frechet_to_source"].transform("mean")
    return out


def verdict_full_wins_shift(df: pd.DataFrame, shifts: pd.DataFrame | None, protocol: str) -> Verdict | None:
    """"Where full FT wins, the shift is large": full FT's lead regressed on the measured relative shift over pairs.

    A positive slope (95% interval above 0) agrees, a negative one disagrees. The points are pairs (their seed-mean
    leads), not runs: the datasets are what varies the shift, so they are the n."""
    if df.empty:
        return None
    if shifts is None or shifts.empty or shifts["frechet_to_source"].isna().all():
        return not_tested("full_wins_far", "no shift measure of the target data against the pretraining source (the "
                          "source is not available offline for this profile)", protocol)
    table = shift_leads(df, shifts)
    if table.empty:
        return None
    fit = stats.slope(table["relative_shift"], 100 * table["diff"])
    verdict = AGREES if fit.sign == 1 else DISAGREES if fit.sign == -1 else INCONCLUSIVE
    won = table[table["outcome"] == 1]
    wins = (", ".join(f"{d}/{b} (shift ×{x:.2f}, lead {_pts(g)})" for d, b, x, g in
                      won[["dataset", "backbone", "relative_shift", "diff"]].itertuples(index=False)) or "none")
    measured = (f"slope of full FT's lead on the relative shift {fit.fmt(scale=1)} points per unit over "
                f"{len(table)} pairs; full FT wins (paired interval above 0) on: {wins}")
    rule = ("full FT's lead per pair (seed means, points) regressed on the Fréchet distance of the frozen target "
            "features to the source's, divided by that backbone's mean over its datasets: a 95% slope interval above "
            "0 agrees, below 0 disagrees, otherwise inconclusive")
    return Verdict("full_wins_far", PAPER["full_wins_far"], measured, verdict, rule, protocol)


def verdict_full_wins_small(df: pd.DataFrame, small: str, large: str, protocol: str) -> Verdict | None:
    """Is full FT's lead larger on the smaller backbone? The unit is the seed (it names the pretraining replicate):
    the datasets on one replicate share its backbone, so they are averaged within it, never counted as n."""
    gaps = gap_per_seed(df)
    s = gaps[gaps["backbone"] == small].set_index(["dataset", "seed"])["gap"]
    b = gaps[gaps["backbone"] == large].set_index(["dataset", "seed"])["gap"]
    shared = s.index.intersection(b.index)  # only the (dataset, seed) cells both backbones have
    s, b = s.loc[shared].groupby(level="seed").mean(), b.loc[shared].groupby(level="seed").mean()
    if s.empty:
        return None
    d = stats.difference(s, b)
    verdict = AGREES if d.sign == 1 else DISAGREES if d.sign == -1 else INCONCLUSIVE
    datasets = shared.get_level_values("dataset").nunique()
    return Verdict("full_wins_small", PAPER["full_wins_small"],
                   f"lead on {small} − lead on {large} = {d.fmt()} points ({d.how}, over {replication_unit(df)}, "
                   f"each the mean over {datasets} dataset{'s' if datasets != 1 else ''})", verdict,
                   "the smaller backbone's lead must exceed the larger one's (95% interval above 0, paired by seed — "
                   "the seed names the pretraining replicate — with the datasets averaged within it: datasets that "
                   "share a backbone are not independent)", protocol)


def verdict_gap(df: pd.DataFrame, protocol: str) -> Verdict | None:
    """Train − test gap of adapters vs full FT, pair by pair (paired over seeds)."""
    gaps = df.assign(gap=df["train_eval_acc"] - df["test_acc"])
    table = pair_differences(gaps, "adapter", "full", metric="gap")
    if table.empty:
        return None
    smaller, larger, n = int((table["outcome"] == -1).sum()), int((table["outcome"] == 1).sum()), len(table)
    verdict = AGREES if smaller > n / 2 else DISAGREES if larger >= n / 2 else INCONCLUSIVE
    measured = (f"the adapter's gap is smaller on {smaller}/{n} pairs, larger on {larger}, undecided on "
                f"{n - smaller - larger} (mean adapter − full gap {_pts(table['diff'].mean())} points; "
                f"{_n_text(table, replication_unit(df))})")
    rule = "per pair, paired 95% t-interval of (adapter gap − full gap) over seeds; majority rule as for wins"
    return Verdict("gap", PAPER["gap"], measured, verdict, rule, protocol)


def width_extremes(backbones: tuple[str, ...]) -> tuple[str, str]:
    """The narrowest and the widest backbone by token width: the pair that decides the "smallest backbone" claim."""
    by_width = sorted(backbones, key=lambda b: backbone_shape(b)[1])
    return by_width[0], by_width[-1]


def verdicts_main(frames: dict[str, pd.DataFrame], backbones: tuple[str, ...],
                  shifts: pd.DataFrame | None = None) -> list[Verdict]:
    """Every main-results claim under every protocol (``frames``: protocol -> runs of the main comparison), each over
    backbone families (``tables.by_family``). The smallest and largest families by token width decide the "smallest
    backbone" claim; ``shifts`` (dataset, backbone = family, ``frechet_to_source``) decides the shift claim."""
    small, large = width_extremes(backbones)
    out: list[Verdict | None] = []
    for protocol, raw in frames.items():
        df = by_family(raw)
        out += [verdict_beats(df, "head", "beats_head", protocol, every_pair=True),
                verdict_beats(df, "full", "beats_full", protocol, every_pair=False),
                verdict_full_wins_shift(df, shifts, protocol),
                verdict_full_wins_small(df, small, large, protocol) if small != large else None,
                verdict_gap(df, protocol)]
    return [v for v in out if v is not None]


def verdict_params(pairs: pd.DataFrame) -> Verdict:
    """The adapter share of full fine-tuning over the core pairs (an exact count, no noise)."""
    mean = pairs["pct_of_full_ft"].mean()
    return Verdict("params", PAPER["params"],
                   f"{mean:.3f}% of what full fine-tuning trains (backbone + head) over {len(pairs)} pairs, "
                   f"{pairs['pct_of_backbone'].mean():.3f}% of the backbone alone", AGREES if abs(mean - 0.917) < 5e-4
                   else DISAGREES, "exact parameter counts on timm models; agrees when the mean rounds to 0.917%")


def verdict_extended(df: pd.DataFrame, note: str, protocol: str) -> Verdict:
    if df.empty:
        return not_tested("extended", f"not run on this profile: {note}", protocol)
    v = verdict_beats(df, "head", "extended", protocol, every_pair=True)
    return v or not_tested("extended", "no pair has both head-only and AdapterTune runs yet", protocol)


__all__ = ["AGREES", "DISAGREES", "EQUIVALENCE_POINTS", "INCONCLUSIVE", "NOT_TESTED", "OUTCOMES", "PAPER", "Verdict",
           "combine", "markdown", "not_tested", "shift_leads", "verdict_beats", "verdict_extended",
           "verdict_full_wins_shift", "verdict_full_wins_small", "verdict_gap", "verdict_params", "verdicts_main",
           "width_extremes"]
