"""The notebooks' commentary, computed: each verdict turns measured tables into markdown next to the paper's claim.

Kept apart from ``tables.py`` (which builds numbers) so the wording can change without touching a table, and so
no notebook ever types a conclusion by hand: if the numbers change, the sentence changes with them.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .tables import (PAIR, compare, gap_table, init_table, measured_elbow, placement_table, rank_table,
                     win_loss)

# The paper's reported findings (PAPER.md), quoted beside what our runs measure.
PAPER = {
    "beats_head": "15/15 core pairs, +14.9 points on average",
    "beats_full": "10/15 core pairs (all CIFAR-100, all Pets, 2 of 3 CIFAR-10)",
    "full_wins": "SVHN and Food101 with ViT-S/16 and DeiT-T/16; widest gap on the smallest backbone (DeiT-T)",
    "extended": "beats head-only on every extended pair; beats full FT on Flowers102 with ViT-B/16",
    "rank": "monotonic gains with diminishing returns (elbow); r=16 a good default, r=32 near peak",
    "placement": "every=1 and every=2 nearly equal",
    "init": "zero init: lower seed variance (std 0.02 vs 0.10); random: slightly higher mean",
    "scale": "larger scale s costs accuracy",
    "params": "0.917% of full fine-tuning on average over the 15 core pairs (the '0.92%' headline)",
}


def verdict_params(pairs: pd.DataFrame) -> str:
    """The adapter share of full fine-tuning over the core pairs, both denominators, beside the paper's 0.917%."""
    return (f"- Over the {len(pairs)} core dataset–backbone pairs AdapterTune (r=16, every=1) trains "
            f"**{pairs['pct_of_full_ft'].mean():.3f}%** of what full fine-tuning trains (backbone + head) and "
            f"{pairs['pct_of_backbone'].mean():.3f}% of the backbone without head; paper: {PAPER['params']}. "
            "The paper's figure matches the first denominator.")


def verdict_early(steps: pd.DataFrame, epochs: float) -> str:
    """First logged loss and mean loss over the first ``epochs`` epochs, zero vs random init (mean ± sd over seeds)."""
    early = steps[steps["epoch"] < epochs] if len(steps) else steps
    if early.empty:
        return "- No step logs in the first epochs."
    first = early.sort_values("step").groupby(["init", "seed"])["loss"].first().groupby("init").agg(["mean", "std"])
    mean = early.groupby(["init", "seed"])["loss"].mean().groupby("init").agg(["mean", "std"])
    parts = [f"{i}: first logged loss {first.loc[i, 'mean']:.4f}, mean over the first {epochs:g} epoch(s) "
             f"{mean.loc[i, 'mean']:.4f} (sd over seeds {mean.loc[i, 'std']:.4f})" for i in first.index]
    return "- " + "; ".join(parts) + "."


# -- verdicts: computed commentary ----------------------------------------------------------------------
def verdict_main(df: pd.DataFrame) -> str:
    """Markdown bullets: our win counts and gaps beside the paper's reported findings."""
    lines = []
    vs_head, vs_full = compare(df, "adapter", "head"), compare(df, "adapter", "full")
    if len(vs_head):
        w = win_loss(df, "adapter", "head")
        agree = "agrees with" if w["wins"] == w["pairs"] else "**disagrees with**"
        lines.append(f"- AdapterTune beats head-only on **{w['wins']}/{w['pairs']}** pairs, mean gain "
                     f"**{vs_head['diff_points'].mean():+.2f} points**; paper: {PAPER['beats_head']} — "
                     f"this {agree} the paper.")
    if len(vs_full):
        w = win_loss(df, "adapter", "full")
        lines.append(f"- AdapterTune beats full fine-tuning on **{w['wins']}/{w['pairs']}** pairs "
                     f"({w['losses']} losses, {w['ties']} ties); paper: {PAPER['beats_full']}.")
        lost = vs_full[vs_full["winner"] == "full"]
        where = ", ".join(f"{d}/{b} ({-g:.2f})" for d, b, g in lost[PAIR + ["diff_points"]].itertuples(index=False))
        lines.append(f"- Full FT wins on: {where or 'no pair'} (points ahead); paper: {PAPER['full_wins']}.")
        by_backbone = (-vs_full.groupby("backbone")["diff_points"].mean()).sort_values(ascending=False)
        widest = ", ".join(f"{b} {g:+.2f}" for b, g in by_backbone.items())
        lines.append(f"- Mean (full − adapter) gap per backbone, widest first: {widest} points.")
    return "\n".join(lines) if lines else "- No pair has both regimes yet: nothing to compare."


def verdict_extended(df: pd.DataFrame, note: str) -> str:
    """Tab.6: either the computed comparison or a plain statement that the profile has no extended benchmark."""
    if df.empty:
        return f"- **Tab.6 is not produced on this profile**: {note}. Paper: {PAPER['extended']}."
    w = win_loss(df, "adapter", "head")
    vs_full = compare(df, "adapter", "full")
    won = ", ".join(f"{d}/{b}" for d, b in vs_full.loc[vs_full["winner"] == "adapter", PAIR].itertuples(index=False))
    return (f"- Extended ({note}): AdapterTune beats head-only on **{w['wins']}/{w['pairs']}** pairs and full FT on "
            f"{won or 'no pair'}. Paper: {PAPER['extended']}.")


def verdict_gap(df: pd.DataFrame) -> str:
    """Which regime overfits most: mean generalisation gap per regime, largest first."""
    table = gap_table(df).sort_values("gap_mean_points", ascending=False)
    return "- Mean train − test gap, largest first: " + ", ".join(
        f"{r} {g:+.2f} points" for r, g in table["gap_mean_points"].items()) + "."


def verdict_rank(rank_df: pd.DataFrame, predicted_elbow: int | None = None, tol_points: float = 0.5) -> str:
    table = rank_table(rank_df)
    if table.empty:
        return "- No rank-sweep runs yet."
    best = table.loc[table["mean_points"].idxmax()]
    elbow = measured_elbow(rank_df, tol_points)
    r16 = table.loc[table["rank"] == 16, "mean_points"]
    monotone = bool(np.all(np.diff(table["mean_points"].to_numpy()) >= -tol_points))
    lines = [f"- Best rank r={int(best['rank'])} ({best['mean_points']:.2f}%); measured elbow (smallest r within "
             f"{tol_points} points of the best): **r={elbow}**; accuracy {'is' if monotone else 'is **not**'} "
             f"monotone in r within {tol_points} points. Paper: {PAPER['rank']}."]
    if len(r16):
        lines.append(f"- r=16 is {best['mean_points'] - r16.item():.2f} points below the best rank.")
    if predicted_elbow is not None:
        lines.append(f"- Predicted elbow from the task-shift spectrum: r={predicted_elbow} (measured: r={elbow}).")
    return "\n".join(lines)


def verdict_placement(df: pd.DataFrame) -> str:
    table = placement_table(df)
    if table.empty:
        return "- No placement runs yet."
    ref = table[(table["every"] == 1) & (table["start"] == 0)]
    if ref.empty:
        return "- The reference placement (every=1, start=0) has no runs yet."
    ref = ref.iloc[0]
    lines = [f"- every={int(row['every'])}, start={int(row['start'])}: {row['mean_points'] - ref['mean_points']:+.2f} "
             f"points vs every=1/start=0, {row['trainable_params'] / ref['trainable_params']:.2f}× the trainable "
             f"parameters, {row['train_images_per_s'] / ref['train_images_per_s']:.2f}× the training throughput."
             for _, row in table.iterrows() if (row["every"], row["start"]) != (1, 0)]
    lines.append(f"- Paper: {PAPER['placement']}; start > 0 is beyond the paper.")
    return "\n".join(lines)


def verdict_init(df: pd.DataFrame) -> str:
    table = init_table(df).set_index("init")
    if not {"zero", "random"} <= set(table.index):
        return "- Zero and random init are not both present yet."
    z, r = table.loc["zero"], table.loc["random"]
    lower = ("n/a: a single seed has no spread" if pd.isna(z["std_points"]) or pd.isna(r["std_points"]) else
             "zero" if z["std_points"] < r["std_points"] else "random" if r["std_points"] < z["std_points"] else "equal")
    higher = "random" if r["mean_points"] > z["mean_points"] else "zero" if z["mean_points"] > r["mean_points"] else "equal"
    return (f"- Seed std: zero {z['std_points']:.2f} vs random {r['std_points']:.2f} points (lower: **{lower}**); "
            f"mean: zero {z['mean_points']:.2f} vs random {r['mean_points']:.2f} (higher: **{higher}**). "
            f"Paper: {PAPER['init']}.")


def verdict_sensitivity(table: pd.DataFrame) -> str:
    if table.empty:
        return "- No sensitivity runs yet."
    lines = []
    for knob, part in table.groupby("knob", sort=False):
        part = part.sort_values("value")
        spread = part["mean_points"].max() - part["mean_points"].min()
        best = part.loc[part["mean_points"].idxmax(), "value"]
        lines.append(f"- {knob}: best {best:g}, spread {spread:.2f} points over {len(part)} values.")
    scale = table[table["knob"] == "scale"].sort_values("value")
    if len(scale) > 1:
        falls = scale["mean_points"].iloc[-1] < scale["mean_points"].max()
        lines.append(f"- The largest scale {'costs' if falls else 'does **not** cost'} accuracy here; "
                     f"paper: {PAPER['scale']}.")
    return "\n".join(lines)


__all__ = ["PAPER", "verdict_params", "verdict_early", "verdict_main", "verdict_extended", "verdict_gap", "verdict_rank", "verdict_placement", "verdict_init", "verdict_sensitivity"]
