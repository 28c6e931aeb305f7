"""Every comparison with the paper, decided in code: ``agrees``, ``disagrees`` or ``inconclusive``, with the test or
interval that decided it and the n it rests on. The notebooks display these; the suite collects them into the claims
table (``claims``). If the numbers change, the verdicts change with them; nothing here is typed by hand but the
paper's own claims (``PAPER``) and the rules.

Rules in one place (``stats`` computes the intervals; 95%, Student t over seeds):
- a per-pair comparison counts as a win or a loss only when its paired interval over seeds excludes 0;
- "beats X on most pairs" agrees when the wins are a strict majority of the pairs, disagrees when the losses are at
  least half, and is inconclusive otherwise;
- "nearly equal" agrees when the whole interval lies within ±``EQUIVALENCE_POINTS`` (two one-sided tests), disagrees
  when the interval lies entirely outside it, and is inconclusive otherwise;
- a variance difference needs the F-test to reject equality; with few seeds it will say how large a ratio it needs;
- an elbow is the smallest rank whose accuracy is not significantly below the best rank's; at the largest rank of the
  grid it is no elbow ("still rising at the grid's edge");
- a "best" value of a knob is named only when it beats the runner-up by more than the seed noise allows.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd

from ..backbones import backbone_shape
from . import stats
from .tables import gap_per_seed, pair_differences

AGREES, DISAGREES, INCONCLUSIVE = "agrees", "disagrees", "inconclusive"
EQUIVALENCE_POINTS = 1.0  # "nearly equal": a difference inside ±1 point of accuracy

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


def _n_text(table: pd.DataFrame) -> str:
    ns = sorted(set(table["n"]))
    return f"n={ns[0]} seeds per pair" if len(ns) == 1 else f"n={ns} seeds per pair"


def verdict_beats(df: pd.DataFrame, other: str, key: str, protocol: str, every_pair: bool) -> Verdict | None:
    """AdapterTune vs ``other`` pair by pair; ``every_pair``: the claim is about all pairs, else about most."""
    table = pair_differences(df, "adapter", other)
    if table.empty:
        return None
    wins, losses, n = int((table["outcome"] == 1).sum()), int((table["outcome"] == -1).sum()), len(table)
    undecided = n - wins - losses
    measured = (f"ahead on {wins}/{n} pairs, behind on {losses}, undecided on {undecided} (mean difference "
                f"{_pts(table['diff'].mean())} points over pairs; {_n_text(table)})")
    if losses:
        measured += f"; behind on {_pair_list(table, -1)}"
    if every_pair:
        verdict = AGREES if wins == n else DISAGREES if losses else INCONCLUSIVE
        rule = "every pair's paired 95% t-interval over seeds must exclude 0 on the adapter's side; one pair on the other side disagrees"
    else:
        verdict = AGREES if wins > n / 2 else DISAGREES if losses >= n / 2 else INCONCLUSIVE
        rule = "a pair counts when its paired 95% t-interval over seeds excludes 0; agrees with wins on a strict majority of pairs, disagrees with losses on at least half"
    return Verdict(key, PAPER[key], measured, verdict, rule, protocol)


def verdict_full_wins_far(df: pd.DataFrame, near: tuple[str, ...], far: tuple[str, ...],
                          protocol: str) -> Verdict | None:
    """Is full FT's lead larger under the far shift than the near one, on every backbone? Per seed, the lead averaged
    over each group's datasets; Welch over seeds (different datasets share seed numbers, not data)."""
    gaps = gap_per_seed(df)
    parts = []
    for backbone, part in gaps.groupby("backbone", sort=True):
        g_far = part[part["dataset"].isin(far)].groupby("seed")["gap"].mean()
        g_near = part[part["dataset"].isin(near)].groupby("seed")["gap"].mean()
        if len(g_far) and len(g_near):
            parts.append((backbone, stats.difference(g_far, g_near, paired=False)))
    if not parts:
        return None
    signs = [d.sign for _, d in parts]
    verdict = AGREES if all(s == 1 for s in signs) else DISAGREES if any(s == -1 for s in signs) else INCONCLUSIVE
    measured = "; ".join(f"{b}: lead under far shift − near = {d.fmt()} points ({d.how})" for b, d in parts)
    rule = (f"full FT's lead over the adapter, averaged over the far-shift datasets ({', '.join(far)}) minus over the "
            f"near ones ({', '.join(near)}), must be above 0 (95% Welch interval over seeds) on every backbone; below 0 "
            "on one disagrees")
    return Verdict("full_wins_far", PAPER["full_wins_far"], measured, verdict, rule, protocol)


def verdict_full_wins_small(df: pd.DataFrame, small: str, large: str, protocol: str) -> Verdict | None:
    """Is full FT's lead larger on the smaller backbone? Paired over (dataset, seed): same data stream."""
    gaps = gap_per_seed(df)
    s = gaps[gaps["backbone"] == small].set_index(["dataset", "seed"])["gap"]
    b = gaps[gaps["backbone"] == large].set_index(["dataset", "seed"])["gap"]
    shared = s.index.intersection(b.index)  # only the (dataset, seed) cells both backbones have
    s, b = s.loc[shared], b.loc[shared]
    if s.empty:
        return None
    d = stats.difference(s, b)
    verdict = AGREES if d.sign == 1 else DISAGREES if d.sign == -1 else INCONCLUSIVE
    return Verdict("full_wins_small", PAPER["full_wins_small"],
                   f"lead on {small} − lead on {large} = {d.fmt()} points ({d.how}, over datasets × seeds)", verdict,
                   "the smaller backbone's lead must exceed the larger one's (95% interval, paired by dataset and seed, above 0)",
                   protocol)


def verdict_gap(df: pd.DataFrame, protocol: str) -> Verdict | None:
    """Train − test gap of adapters vs full FT, pair by pair (paired over seeds)."""
    gaps = df.assign(gap=df["train_eval_acc"] - df["test_acc"])
    table = pair_differences(gaps, "adapter", "full", metric="gap")
    if table.empty:
        return None
    smaller, larger, n = int((table["outcome"] == -1).sum()), int((table["outcome"] == 1).sum()), len(table)
    verdict = AGREES if smaller > n / 2 else DISAGREES if larger >= n / 2 else INCONCLUSIVE
    measured = (f"the adapter's gap is smaller on {smaller}/{n} pairs, larger on {larger}, undecided on "
                f"{n - smaller - larger} (mean adapter − full gap {_pts(table['diff'].mean())} points; {_n_text(table)})")
    rule = "per pair, paired 95% t-interval of (adapter gap − full gap) over seeds; majority rule as for wins"
    return Verdict("gap", PAPER["gap"], measured, verdict, rule, protocol)


def verdicts_main(frames: dict[str, pd.DataFrame], near: tuple[str, ...], far: tuple[str, ...],
                  backbones: tuple[str, ...]) -> list[Verdict]:
    """Every main-results claim under every protocol (``frames``: protocol -> runs of the main comparison).
    The smallest and largest backbones by token width decide the "smallest backbone" claim."""
    by_width = sorted(backbones, key=lambda b: backbone_shape(b)[1])
    out: list[Verdict | None] = []
    for protocol, df in frames.items():
        out += [verdict_beats(df, "head", "beats_head", protocol, every_pair=True),
                verdict_beats(df, "full", "beats_full", protocol, every_pair=False),
                verdict_full_wins_far(df, near, far, protocol) if far else None,
                verdict_full_wins_small(df, by_width[0], by_width[-1], protocol) if len(by_width) > 1 else None,
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
        return Verdict("extended", PAPER["extended"], f"not run on this profile: {note}", INCONCLUSIVE,
                       "needs the extended benchmark's runs", protocol)
    v = verdict_beats(df, "head", "extended", protocol, every_pair=True)
    return v or Verdict("extended", PAPER["extended"], "no pair has both regimes yet", INCONCLUSIVE,
                        "needs head-only and AdapterTune runs on the same pairs", protocol)


__all__ = ["AGREES", "DISAGREES", "EQUIVALENCE_POINTS", "INCONCLUSIVE", "PAPER", "Verdict", "markdown", "verdict_beats",
           "verdict_extended", "verdict_full_wins_far", "verdict_full_wins_small", "verdict_gap", "verdict_params",
           "verdicts_main"]
