"""The controls: runs that test the explanations of the main results instead of asserting them.

Each function turns a grid's runs into a table with intervals over seeds (``stats``) and one ``Finding``: a question
and the measured answer, with its n and the test behind it. Findings are not verdicts on the paper; they are what the
README's explanation of the mini results may say, and nothing more.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from ..backbones import mini_variant, mini_weights_path
from . import stats
from .tables import PAIR, gap_per_seed, method_label
from .verdicts import verdict_beats, verdict_full_wins_small, width_extremes


@dataclass(frozen=True)
class Finding:
    """A control's question and its measured answer (numbers with intervals and n) and how it was measured."""

    key: str
    question: str
    answer: str
    how: str

    def markdown(self) -> str:
        return f"- **{self.question}** {self.answer} ({self.how})."

    def row(self) -> dict:
        return asdict(self)


def _by_seed(df: pd.DataFrame, metric: str = "test_acc") -> pd.Series:
    return df.groupby("seed")[metric].mean()


def _diff_row(a: pd.DataFrame, b: pd.DataFrame, **keys) -> dict:
    d = stats.difference(_by_seed(a), _by_seed(b))
    return {**keys, "a_mean": 100 * _by_seed(a).mean(), "b_mean": 100 * _by_seed(b).mean(), "diff_points": 100 * d.estimate,
            "low": 100 * d.low, "high": 100 * d.high, "n": d.n, "how": d.how}


def tuning_gains(recipe: pd.DataFrame, tuned: pd.DataFrame) -> pd.DataFrame:
    """Per pair and regime: tuned − paper-recipe test accuracy (points), paired over seeds."""
    rows = []
    for (dataset, backbone, method), part in tuned.groupby(PAIR + ["method"], sort=True):
        base = recipe[(recipe["dataset"] == dataset) & (recipe["backbone"] == backbone) & (recipe["method"] == method)]
        if len(base):
            lr = float(part["lr"].iloc[0])
            rows.append(_diff_row(part, base, dataset=dataset, backbone=backbone, regime=method_label(method), lr=lr))
    return pd.DataFrame(rows)


def gap_change(recipe: pd.DataFrame, tuned: pd.DataFrame) -> Finding | None:
    """How much of full FT's lead over the adapter survives when each regime gets its own learning rate."""
    g_recipe, g_tuned = gap_per_seed(recipe), gap_per_seed(tuned)
    if g_recipe.empty or g_tuned.empty:
        return None
    per_pair = []
    for (dataset, backbone), part in g_tuned.groupby(PAIR, sort=True):
        base = g_recipe[(g_recipe["dataset"] == dataset) & (g_recipe["backbone"] == backbone)]
        if len(base):
            per_pair.append((dataset, backbone, 100 * base["gap"].mean(), 100 * part["gap"].mean()))
    if not per_pair:
        return None
    text = "; ".join(f"{d}/{b} {r:+.2f} → {t:+.2f}" for d, b, r, t in per_pair)
    mean_r, mean_t = np.mean([x[2] for x in per_pair]), np.mean([x[3] for x in per_pair])
    return Finding("tuning_gap", "Does full FT's lead survive a learning rate tuned per regime?",
                   f"full − adapter, paper recipe → tuned, mean over seeds: {text} points (mean over pairs "
                   f"{mean_r:+.2f} → {mean_t:+.2f})",
                   "per pair, seed means of both protocols; each protocol's per-pair intervals are in the claims table")


def scratch_table(tuned: pd.DataFrame, scratch: pd.DataFrame) -> pd.DataFrame:
    """Per pair: the pretrained backbone's full FT and adapter against full training from random init (tuned)."""
    rows = []
    for (dataset, backbone), part in scratch.groupby(PAIR, sort=True):
        pair = tuned[(tuned["dataset"] == dataset) & (tuned["backbone"] == backbone)]
        for method in ("full", "adapter"):
            these = pair[pair["method"] == method]
            if len(these):
                rows.append(_diff_row(these, part, dataset=dataset, backbone=backbone,
                                      comparison=f"{method_label(method)} (pretrained) − from scratch"))
    return pd.DataFrame(rows)


def scratch_finding(table: pd.DataFrame) -> Finding | None:
    full = table[table["comparison"].str.startswith(method_label("full"))] if len(table) else table
    if full.empty:
        return None
    text = "; ".join(f"{d}/{b} {x:+.2f} [{lo:+.2f}, {hi:+.2f}]" for d, b, x, lo, hi in
                     full[["dataset", "backbone", "diff_points", "low", "high"]].itertuples(index=False))
    return Finding("scratch", "What does the pretraining buy?",
                   f"full FT from the pretrained backbone − full training from random init: {text} points",
                   f"both at their tuned learning rate; paired 95% t-intervals over n={int(full['n'].min())} seeds")


def source_accuracy(backbone: str, profile: str) -> float:
    """The source-task validation accuracy of a pretrained mini backbone, from its provenance JSON (a fraction)."""
    return float(json.loads(mini_weights_path(backbone, profile).with_suffix(".json").read_text())["source_val_acc"])


def dose_points(runs: pd.DataFrame) -> list[tuple[str, bool]]:
    """``(backbone, pretrained)`` of every dose point in ``runs``: what needs a measured source accuracy."""
    return [(str(b), bool(p)) for b, p in runs[["backbone", "pretrained"]].drop_duplicates().itertuples(index=False)]


Probes = dict[tuple[str, bool], float]


def _dose_x(backbone: str, pretrained: bool, profile: str, probes: Probes | None) -> tuple[float, str]:
    """A dose point's x in % and what measured it: the linear probe where ``probes`` has the point (the same measure
    for every point), else the pretraining's own source validation accuracy; a random-init backbone without a probe
    has no measured x (NaN: it leaves the slope, nothing is assumed)."""
    if probes and (backbone, pretrained) in probes and probes[(backbone, pretrained)] is not None:
        return 100 * probes[(backbone, pretrained)], "linear probe"
    if pretrained:
        return 100 * source_accuracy(backbone, profile), "pretraining val"
    return np.nan, "not measured"


def dose_table(runs: pd.DataFrame, profile: str, probes: Probes | None = None) -> pd.DataFrame:
    """Per (dataset, backbone, pretrained) dose point: its measured source accuracy (``_dose_x``), the adapter and
    full FT means and full FT's lead with its interval, over the seeds both regimes ran (paired, as :func:`dose_slope`
    fits them): the lead at every point, not only the slope."""
    rows = []
    for (dataset, backbone, pretrained), part in runs.groupby(["dataset", "backbone", "pretrained"], sort=True):
        adapter, full = part[part["method"] == "adapter"], part[part["method"] == "full"]
        shared = set(adapter["seed"]) & set(full["seed"])  # the seeds the slope pairs: the lead it fits, point by point
        adapter, full = adapter[adapter["seed"].isin(shared)], full[full["seed"].isin(shared)]
        if adapter.empty or full.empty:
            continue
        x, how = _dose_x(backbone, bool(pretrained), profile, probes)
        rows.append(_diff_row(full, adapter, dataset=dataset,
                              backbone=backbone if pretrained else f"{backbone} (random init)", source_val_acc=x,
                              source_measure=how))
    return pd.DataFrame(rows).rename(columns={"a_mean": "full", "b_mean": "adapter", "diff_points": "full_lead_points"})


def dose_slope(runs: pd.DataFrame, profile: str, probes: Probes | None = None) -> pd.DataFrame:
    """Per dataset: the slope of full FT's lead (points) on the measured source accuracy (points) by least squares
    over every (dose point, seed), with a 95% t-interval: how fast a better pretraining closes the gap. Points
    without a measured x are left out (``dose_points`` says how many x values remain)."""
    rows = []
    gaps = []
    for (dataset, backbone, pretrained), part in runs.groupby(["dataset", "backbone", "pretrained"], sort=True):
        g = gap_per_seed(part)
        x, _ = _dose_x(backbone, bool(pretrained), profile, probes)
        if len(g) and not np.isnan(x):
            gaps.append(g.assign(source=x))
    if not gaps:
        return pd.DataFrame(columns=["dataset", "slope", "low", "high", "points", "dose_points"])
    data = pd.concat(gaps, ignore_index=True)
    for dataset, part in data.groupby("dataset", sort=True):
        x, y = part["source"].to_numpy(float), 100 * part["gap"].to_numpy(float)
        slope = stats.slope(x, y)
        rows.append({"dataset": dataset, "slope": slope.estimate, "low": slope.low, "high": slope.high,
                     "points": len(part), "dose_points": part["source"].nunique()})
    return pd.DataFrame(rows)


def dose_finding(slopes: pd.DataFrame, table: pd.DataFrame) -> Finding | None:
    if slopes.empty:
        return None
    text = "; ".join(f"{d}: {10 * s:+.2f} [{10 * lo:+.2f}, {10 * hi:+.2f}] points over {int(k)} dose points"
                     for d, s, lo, hi, k in slopes[["dataset", "slope", "low", "high", "dose_points"]].itertuples(index=False))
    measured = table.dropna(subset=["source_val_acc"]) if len(table) else table
    span = f"{measured['source_val_acc'].min():.1f}–{measured['source_val_acc'].max():.1f}%" if len(measured) else "—"
    how = ", ".join(sorted(set(measured["source_measure"]))) if len(measured) else "—"
    leads = "; ".join(f"{d}/{b} {x:.1f}% → {g:+.2f}" for d, b, x, g in
                      measured[["dataset", "backbone", "source_val_acc", "full_lead_points"]].itertuples(index=False))
    return Finding("dose", "Does a better-pretrained backbone close full FT's lead?",
                   f"change of full FT's lead per +10 points of source accuracy: {text} (source accuracies "
                   f"{span}, measured by {how}; a negative slope closes the gap); lead per point: {leads}",
                   f"least squares over every dose point × seed ({int(slopes['points'].min())}+ runs per dataset) "
                   "with a 95% t-interval; every backbone's adapter and full FT at their own tuned learning rate; a "
                   "point without a measured source accuracy leaves the slope")


def budget_table(tuned: pd.DataFrame, budget: pd.DataFrame) -> pd.DataFrame:
    """Per pair: the adapter at the paper's relative budget (r = d/24) against r=16 and against full FT (tuned)."""
    rows = []
    for (dataset, backbone), part in budget.groupby(PAIR, sort=True):
        pair = tuned[(tuned["dataset"] == dataset) & (tuned["backbone"] == backbone)]
        rank = int(part["rank"].iloc[0])
        for method, label in (("adapter", f"r={rank} − r=16"), ("full", f"r={rank} − Full FT")):
            these = pair[pair["method"] == method]
            if len(these):
                rows.append(_diff_row(part, these, dataset=dataset, backbone=backbone, comparison=label))
    return pd.DataFrame(rows)


def budget_finding(table: pd.DataFrame) -> Finding | None:
    vs16 = table[table["comparison"].str.endswith("r=16")] if len(table) else table
    if vs16.empty:
        return None
    text = "; ".join(f"{d}/{b} ({c.split(' ')[0]}) {x:+.2f} [{lo:+.2f}, {hi:+.2f}]" for d, b, c, x, lo, hi in
                     vs16[["dataset", "backbone", "comparison", "diff_points", "low", "high"]].itertuples(index=False))
    return Finding("budget", "Does the mini backbones' larger relative rank matter?",
                   f"adapter at the paper's r/d ≈ 1/24 − adapter at r=16: {text} points",
                   f"both at the adapter's tuned learning rate; paired 95% t-intervals over n={int(vs16['n'].min())} seeds")


def longer_verdicts(tuned: pd.DataFrame, longer: pd.DataFrame, backbones: tuple[str, ...]) -> pd.DataFrame:
    """Claims 3 and 5 (``beats_full``, ``full_wins_small``) on the pairs the longer schedule ran, at the recipe's
    epochs and at the longer one: same pairs, same seeds on the same replicates, the rate chosen at 1x. Both frames
    by backbone family (``tables.by_family``); the smallest and largest families by width decide claim 5."""
    small, large = width_extremes(backbones)
    pairs = longer[PAIR].drop_duplicates()
    base = tuned.merge(pairs, on=PAIR, how="inner")
    rows = []
    for budget, frame in (("1x", base), (f"{_factor(longer, base)}x", longer)):
        for v in (verdict_beats(frame, "full", "beats_full", "tuned", every_pair=False),
                  verdict_full_wins_small(frame, small, large, "tuned") if small != large else None):
            if v is not None:
                rows.append({"claim": v.key, "epochs": budget, "verdict": v.verdict, "measured": v.measured})
    return pd.DataFrame(rows, columns=["claim", "epochs", "verdict", "measured"])


def _factor(longer: pd.DataFrame, base: pd.DataFrame) -> str:
    ratios = (longer.groupby("dataset")["epochs"].first() / base.groupby("dataset")["epochs"].first()).dropna()
    return f"{ratios.iloc[0]:g}" if len(ratios) else "?"


def longer_finding(table: pd.DataFrame) -> Finding | None:
    """Does each claim keep its verdict at the longer schedule?"""
    if table.empty or table["epochs"].nunique() < 2:
        return None
    parts = []
    for claim, rows in table.groupby("claim", sort=False):
        by = dict(zip(rows["epochs"], rows["verdict"]))
        longer = [e for e in by if e != "1x"][0]
        kept = "keeps its verdict" if by.get("1x") == by[longer] else "changes verdict"
        parts.append(f"{claim}: {by.get('1x', '—')} at 1x, {by[longer]} at {longer} ({kept})")
    return Finding("longer", "Do claims 3 and 5 keep their sign at a longer training budget?", "; ".join(parts),
                   "the tuned comparison on the same pairs and replicates, each regime at its 1x rate; verdict rules "
                   "as in the claims table (tab05_longer lists what each measured)")


def matched_verdicts(tuned: pd.DataFrame, seeds: pd.DataFrame, matched: pd.DataFrame, large: str | None,
                     profile: str) -> pd.DataFrame:
    """Claim 5 on replicate 0 of each width (training seeds 0-2 from the tuned and seeds grids), first with the small
    family's final backbone, then with its snapshot of matched source accuracy (``matched``): is "the smaller
    backbone loses more to full FT" about width, or about the weaker pretraining it came with?"""
    base = pd.concat([tuned, seeds], ignore_index=True)
    rows = []
    if matched.empty:
        return pd.DataFrame(rows, columns=["comparison", "small", "large", "source_acc_small", "source_acc_large",
                                           "verdict", "measured"])
    snapshot = matched["backbone"].iloc[0]
    for label, small, frame in (("final backbones", mini_variant(snapshot)[0], base),
                                ("matched source accuracy", snapshot, pd.concat([base, matched], ignore_index=True))):
        runs = frame[frame["backbone"].isin([small, large])]
        v = verdict_full_wins_small(runs, small, large, "tuned")
        if v is not None:
            rows.append({"comparison": label, "small": small, "large": large,
                         "source_acc_small": 100 * source_accuracy(small, profile),
                         "source_acc_large": 100 * source_accuracy(large, profile), "verdict": v.verdict,
                         "measured": v.measured})
    return pd.DataFrame(rows)


def matched_finding(table: pd.DataFrame) -> Finding | None:
    if len(table) < 2:
        return None
    final, matched = table.iloc[0], table.iloc[-1]
    return Finding("matched", "Is claim 5 about width, or about pretraining quality?",
                   f"with the final backbones ({final['small']} {final['source_acc_small']:.1f}% vs {final['large']} "
                   f"{final['source_acc_large']:.1f}% source accuracy) claim 5 {final['verdict']}; with "
                   f"{matched['small']} ({matched['source_acc_small']:.1f}%) in place of {final['small']} it "
                   f"{matched['verdict']} ({matched['measured']})",
                   "replicate 0 of each width, training seeds 0-2, tuned rates of the family; the snapshot is the "
                   "candidate whose source validation accuracy is nearest the larger backbone's. One pretraining run "
                   "per width, so n counts training seeds: this decides claim 5 for these backbones, not for width "
                   "in general (between pretraining runs the spread is larger: see the variance components)")


def pretraining_seed_table(main: pd.DataFrame, other: pd.DataFrame, base: dict[str, str]) -> pd.DataFrame:
    """Per (dataset, backbone pretrained with another seed, regime): the run on the other backbone minus the run on the
    main one at the same seed, beside the main cell's sd over seeds."""
    rows = []
    for (dataset, backbone, method, seed), part in other.groupby(["dataset", "backbone", "method", "seed"], sort=True):
        cell = main[(main["dataset"] == dataset) & (main["backbone"] == base[backbone]) & (main["method"] == method)]
        same = cell[cell["seed"] == seed]
        if same.empty:
            continue
        rows.append({"dataset": dataset, "backbone": backbone, "regime": method_label(method), "seed": int(seed),
                     "moved_points": 100 * (part["test_acc"].mean() - same["test_acc"].mean()),
                     "seed_sd_points": 100 * cell["test_acc"].std(ddof=1) if len(cell) > 1 else np.nan,
                     "seeds": len(cell)})
    return pd.DataFrame(rows)


def pretraining_seed_leads(table: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, other backbone, seed): how the other pretraining run moved the adapter and full FT, and so full
    FT's lead over the adapter (full's move − the adapter's, points): the direction the mean |move| hides."""
    cols = ["dataset", "backbone", "seed", "adapter_moved", "full_moved", "lead_moved"]
    if table.empty:
        return pd.DataFrame(columns=cols)
    wide = table.pivot_table(index=["dataset", "backbone", "seed"], columns="regime", values="moved_points")
    adapter, full = method_label("adapter"), method_label("full")
    if not {adapter, full} <= set(wide.columns):
        return pd.DataFrame(columns=cols)
    out = pd.DataFrame({"adapter_moved": wide[adapter], "full_moved": wide[full]}).dropna().reset_index()
    out["lead_moved"] = out["full_moved"] - out["adapter_moved"]
    return out[cols]


def pretraining_seed_finding(table: pd.DataFrame) -> Finding | None:
    if table.empty:
        return None
    moved = table["moved_points"].abs()
    leads = pretraining_seed_leads(table)
    direction = ""
    if len(leads):
        grew, shrank = int((leads["lead_moved"] > 0).sum()), int((leads["lead_moved"] < 0).sum())
        iv = stats.mean_interval(leads["lead_moved"].to_numpy())
        direction = ("; full FT's lead over the adapter moved by " + ", ".join(
            f"{d}/{b} {x:+.2f}" for d, b, x in leads[["dataset", "backbone", "lead_moved"]].itertuples(index=False))
            + f" points (grew on {grew}, shrank on {shrank} of {len(leads)}; mean {iv.fmt(scale=1)})")
    return Finding("pretraining_seed", "How much does the choice of pretraining run move Tab.2, and which way?",
                   f"a second pretraining seed moves the {len(table)} cells by {moved.mean():.2f} points on average "
                   f"(largest {moved.max():.2f}); the same cells' sd over training seeds has median "
                   f"{table['seed_sd_points'].median():.2f} points" + direction,
                   "one run per cell on each backbone at the same training seed, paper recipe; the lead's move is full "
                   "FT's move minus the adapter's, with a 95% t-interval over cells")


__all__ = ["Finding", "Probes", "budget_finding", "budget_table", "dose_finding", "dose_points", "dose_slope",
           "dose_table", "longer_finding", "longer_verdicts", "matched_finding", "matched_verdicts",
           "gap_change", "pretraining_seed_finding", "pretraining_seed_leads", "pretraining_seed_table", "scratch_finding", "scratch_table", "source_accuracy",
           "tuning_gains"]
