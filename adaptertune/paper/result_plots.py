"""The figures of notebooks 03–05: main results under both protocols, the learning-rate search, the ablations, the
failure analysis and the controls. Infrastructure (style, file names, saving, placeholders) lives in ``plots``.

Every figure says what its error bars are and how many seeds they rest on, in the title or the axis label.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from ..regimes import regime
from .plots import _or_placeholder, missing_runs, regime_order, regime_palette
from .tables import method_label

ADAPTER_COLOUR = regime("adapter").colour


def _regime(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(regime=df["method"].map(method_label))


def _seeds(df: pd.DataFrame) -> str:
    n = df.groupby([c for c in ("protocol", "dataset", "backbone", "method", "rank", "init", "every", "start")
                    if c in df.columns], dropna=False)["seed"].nunique()
    return f"n={int(n.min())}" if n.min() == n.max() else f"n={int(n.min())}–{int(n.max())}"


# -- notebook 03 -------------------------------------------------------------------------------------------------
@_or_placeholder
def main_results(df: pd.DataFrame, datasets: list[str] | None = None) -> Figure:
    """Test accuracy per dataset and regime, one row of panels per protocol and a column per backbone.
    ``df`` carries a ``protocol`` column. Bars: seed means; error bars: sample sd over the seeds."""
    data = _regime(df).assign(acc=lambda d: 100 * d["test_acc"])
    grid = sns.catplot(data=data, x="dataset", y="acc", hue="regime", col="backbone", row="protocol", kind="bar",
                       errorbar="sd", order=[d for d in datasets if d in set(data["dataset"])] if datasets else None,
                       hue_order=[r for r in regime_order() if r in set(data["regime"])], palette=regime_palette(),
                       height=3.2, aspect=1.3, sharey=True)
    grid.set_axis_labels("", "test accuracy (%)")
    grid.set_titles("{row_name} · {col_name}")
    grid.figure.suptitle(f"Top-1 test accuracy: bars = mean, error bars = sample sd over seeds ({_seeds(df)})", y=1.02)
    return grid.figure


@_or_placeholder
def generalisation_gap(gaps: pd.DataFrame) -> Figure:
    """``train_eval_acc − test_acc`` (points) per regime and dataset; rows protocols, columns backbones."""
    grid = sns.catplot(data=gaps, x="dataset", y="gap_points", hue="regime", col="backbone", row="protocol", kind="bar",
                       errorbar="sd", hue_order=[r for r in regime_order() if r in set(gaps["regime"])],
                       palette=regime_palette(), height=3.2, aspect=1.3)
    grid.set_axis_labels("", "train − test accuracy (points)")
    grid.set_titles("{row_name} · {col_name}")
    for ax in grid.axes.flat:
        ax.axhline(0, color="k", lw=0.8)
    grid.figure.suptitle(f"Generalisation gap: mean ± sample sd over seeds ({_seeds(gaps)})", y=1.02)
    return grid.figure


CONTROL_LABELS = {"scratch": "Full FT from random init", "random_adapter": "AdapterTune on a random-init backbone"}
CONTROL_PALETTE = {CONTROL_LABELS["scratch"]: "#edae49", CONTROL_LABELS["random_adapter"]: "#66a182"}


def lr_selection(table: pd.DataFrame) -> Figure:
    """The tuned protocol's search: validation accuracy of the selection seed at each candidate rate, the chosen one
    ringed; one panel per searched (backbone, dataset) cell. Candidates not yet trained are left out (a store with
    none gets the placeholder)."""
    data = table.dropna(subset=["val_acc"])
    if data.empty:
        return missing_runs("lr selection: no candidate rate trained yet")
    data = data.assign(
        regime=lambda d: d["regime"].map(lambda r: CONTROL_LABELS.get(r, method_label(r))),
        cell=lambda d: d["backbone"] + " · " + d["dataset"])
    grid = sns.relplot(data=data, x="lr", y="val_acc", hue="regime", col="cell", col_wrap=3, kind="line", marker="o",
                       palette={**regime_palette(), **CONTROL_PALETTE}, height=2.8, aspect=1.2, estimator=None,
                       facet_kws={"sharey": False})
    for cell, ax in grid.axes_dict.items():
        chosen = data[(data["cell"] == cell) & data["chosen"]]
        ax.scatter(chosen["lr"], chosen["val_acc"], s=160, facecolors="none", edgecolors="k", linewidths=1.4, zorder=5)
        ax.set_xscale("log")
    grid.set_axis_labels("learning rate", "validation accuracy (%)")
    grid.set_titles("{col_name}")
    grid.figure.suptitle("Learning-rate search on validation (selection seed, n=1 per point; ringed = chosen)", y=1.02)
    return grid.figure


# -- notebook 04 -------------------------------------------------------------------------------------------------
@_or_placeholder
def rank_curve(rank_runs: pd.DataFrame, references: pd.DataFrame | None = None, elbow: int | None = None,
               at_edge: bool = False, title: str = "") -> Figure:
    """Accuracy vs rank (mean ± sd over seeds); dashed: head-only / full FT means on the same pair; the measured
    elbow (smallest rank not significantly below the best) marked, or the grid's edge named when there is none."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    data = rank_runs.assign(acc=100 * rank_runs["test_acc"])
    sns.lineplot(data=data, x="rank", y="acc", errorbar="sd", marker="o", color=ADAPTER_COLOUR, ax=ax,
                 label=f"AdapterTune, mean ± sd ({_seeds(rank_runs)})")
    ranks = sorted({int(r) for r in data["rank"]})
    if references is not None and len(references):
        for method, acc in references.groupby("method")["test_acc"].mean().items():
            label = method_label(method)
            ax.axhline(100 * acc, ls="--", color=regime_palette().get(label, "0.5"), label=f"{label} (mean)")
    if elbow is not None:
        text = f"no elbow inside the grid (r={elbow} is its edge)" if at_edge else f"measured elbow r={elbow}"
        ax.axvline(elbow, color="k", ls=":", lw=1.2, label=text)
    ax.set(xscale="log", xlabel="adapter rank r", ylabel="test accuracy (%)", title=title or "Accuracy vs rank")
    ax.set_xticks(ranks, labels=[str(r) for r in ranks])
    ax.minorticks_off()
    ax.legend(fontsize=8)
    return fig


@_or_placeholder
def placement(df: pd.DataFrame) -> Figure:
    """Cost/accuracy of placements: accuracy (mean ± sd) and accuracy vs trainable parameters (deterministic, unlike
    a measured speed, so the figure reproduces)."""
    data = df.sort_values(["every", "start"])
    data = data.assign(acc=100 * data["test_acc"],
                       placement=[f"every {int(e)}\nstart {int(s)}" for e, s in zip(data["every"], data["start"])])
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    sns.pointplot(data=data, x="placement", y="acc", errorbar="sd", ax=axes[0], color=ADAPTER_COLOUR, linestyle="none")
    axes[0].set(xlabel="", ylabel="test accuracy (%)", title=f"Accuracy: mean ± sd ({_seeds(df)})")
    sns.scatterplot(data=data, x="trainable_params", y="acc", hue="placement", style="placement", s=60, ax=axes[1])
    axes[1].set(xlabel="trainable parameters (adapters + head)", ylabel="test accuracy (%)",
                title="Parameters vs accuracy (every run)")
    axes[1].legend(fontsize=7, loc="best")
    return fig


def init_arm(df: pd.DataFrame) -> pd.Series:
    """Each init run's arm: ``zero``, or ``random σ=<init_std>`` (zero init has no sigma: W_up and b_up start at 0)."""
    return pd.Series(["zero" if i == "zero" else f"random σ={float(s):g}" for i, s in zip(df["init"], df["init_std"])],
                     index=df.index, dtype=object)


@_or_placeholder
def init_spread(df: pd.DataFrame) -> Figure:
    """Zero vs random init at each sigma: every seed's accuracy, to show the spread the paper's std summarises."""
    data = df.assign(acc=100 * df["test_acc"], arm=init_arm(df))
    order = ["zero"] + sorted((a for a in data["arm"].unique() if a != "zero"), key=lambda a: float(a.split("=")[1]))
    fig, ax = plt.subplots(figsize=(1.8 + 1.4 * len(order), 3.8))
    sns.boxplot(data=data, x="arm", y="acc", ax=ax, color="0.9", order=order)
    sns.swarmplot(data=data, x="arm", y="acc", ax=ax, order=order, color=ADAPTER_COLOUR,
                  size=6)  # deterministic placement (stripplot jitters at random): the figure is a pure function of the runs
    ax.set(xlabel="adapter init", ylabel="test accuracy (%)", title=f"Seed spread by init (one dot per seed, {_seeds(df)})")
    return fig


@_or_placeholder
def sensitivity(table: pd.DataFrame, defaults: dict[str, float]) -> Figure:
    """Tab.5 as a figure: accuracy (mean ± sd over seeds) at each grid value — categorical x, the values as run — one
    panel per knob on one shared y range, the default value in black."""
    knobs = list(dict.fromkeys(table["knob"]))
    fig, axes = plt.subplots(1, len(knobs), figsize=(3.6 * len(knobs), 3.6), squeeze=False, sharey=True)
    sd = table["std_points"].fillna(0)
    lo, hi = (table["mean_points"] - sd).min(), (table["mean_points"] + sd).max()
    pad = max(0.5, 0.1 * (hi - lo))
    for ax, knob in zip(axes[0], knobs):
        part = table[table["knob"] == knob].sort_values("value").reset_index(drop=True)
        x = np.arange(len(part))
        is_default = np.isclose(part["value"].astype(float), float(defaults[knob]))
        ax.errorbar(x, part["mean_points"], yerr=part["std_points"].fillna(0), color=ADAPTER_COLOUR, marker="o",
                    capsize=3, lw=1)
        ax.scatter(x[is_default], part["mean_points"][is_default], color="k", zorder=5, s=50, label="default")
        ax.set_xticks(x, labels=[f"{v:g}" for v in part["value"]])
        n = int(part["seeds"].min())
        ax.set(xlabel=knob, title=f"{knob} (mean ± sd, n={n} seed{'s' if n > 1 else ''})")
        ax.set_ylim(lo - pad, hi + pad)
    axes[0][0].set_ylabel("test accuracy (%)")
    axes[0][0].legend(fontsize=7, loc="lower left")
    return fig


# -- notebook 05 -------------------------------------------------------------------------------------------------
@_or_placeholder
def gap_vs(frame: pd.DataFrame, x: str, xlabel: str, title: str = "") -> Figure:
    """Full FT's lead over AdapterTune per pair (points, mean with its 95% interval over seeds) against a pair-level
    measure; one panel per protocol and backbone (features of different widths are not on one axis)."""
    data = frame.dropna(subset=[x, "gap_points"])
    panels = list(data.groupby(["protocol", "backbone"], sort=True)) if len(data) else []
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(3.6 * max(1, len(panels)), 3.6), squeeze=False,
                             sharey=True)
    palette = dict(zip(sorted(data["dataset"].unique()), sns.color_palette("colorblind", data["dataset"].nunique())))
    for ax, ((protocol, backbone), part) in zip(axes[0], panels):
        for _, row in part.iterrows():
            err = [[row["gap_points"] - row["gap_low"]], [row["gap_high"] - row["gap_points"]]]
            ax.errorbar(row[x], row["gap_points"], yerr=err if np.isfinite(err).all() else None, fmt="o", ms=7,
                        color=palette[row["dataset"]], capsize=3, label=row["dataset"])
        ax.axhline(0, color="k", lw=0.8)
        ax.set(xlabel="", title=f"{protocol} · {backbone}")
    axes[0][0].set_ylabel("full FT − AdapterTune (points)")
    fig.supxlabel(xlabel)
    handles, labels = axes[0][0].get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    fig.legend(unique.values(), unique.keys(), loc="upper right", fontsize=8, title="dataset")
    fig.suptitle(title or f"Full FT's lead vs {xlabel} (mean and 95% interval over seeds)", y=1.03)
    return fig


@_or_placeholder
def dose_response(table: pd.DataFrame) -> Figure:
    """Full FT's lead (points, mean and 95% interval over seeds) against the frozen backbone's source validation
    accuracy, one panel per dataset: does better pretraining close the gap?"""
    datasets = sorted(table["dataset"].unique())
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.4 * len(datasets), 3.8), squeeze=False, sharey=True)
    for ax, dataset in zip(axes[0], datasets):
        part = table[table["dataset"] == dataset].sort_values("source_val_acc")
        err = np.vstack([part["full_lead_points"] - part["low"], part["high"] - part["full_lead_points"]])
        ax.errorbar(part["source_val_acc"], part["full_lead_points"], yerr=np.nan_to_num(err), fmt="o-", capsize=3,
                    color=regime("full").colour)
        for _, row in part.iterrows():
            ax.annotate(row["backbone"], (row["source_val_acc"], row["full_lead_points"]), fontsize=7,
                        xytext=(4, -10), textcoords="offset points")
        ax.axhline(0, color="k", lw=0.8)
        ax.set(xlabel="", title=dataset)
    axes[0][0].set_ylabel("full FT − AdapterTune (points)")
    fig.supxlabel("source validation accuracy of the frozen backbone (%)")
    fig.suptitle(f"Dose-response: full FT's lead vs pretraining quality (mean and 95% interval, {_seeds_of(table)})",
                 y=1.03)
    return fig


def _seeds_of(table: pd.DataFrame) -> str:
    return f"n={int(table['n'].min())}" if table["n"].min() == table["n"].max() else \
        f"n={int(table['n'].min())}–{int(table['n'].max())}"


@_or_placeholder
def per_class(errors: pd.DataFrame, title: str = "") -> Figure:
    """Heatmap of per-class error rates (%): rows classes, columns regimes."""
    wide = errors.pivot_table(index="class_name", columns="regime", values="error", aggfunc="mean")
    wide = wide.reindex(errors.sort_values("class")["class_name"].unique())  # class-index order, not alphabetical
    wide = wide[[r for r in regime_order() if r in wide.columns]] * 100
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * wide.shape[1], 0.9 + 0.32 * len(wide)))
    sns.heatmap(wide, annot=True, fmt=".1f", cmap="rocket_r", ax=ax, cbar_kws={"label": "error (%)"})
    n = errors.groupby("regime")["seed"].nunique().min()
    ax.set(xlabel="", ylabel="", title=(title or "Per-class test error") + f" (mean over n={n} seeds)")
    return fig


@_or_placeholder
def examples(images: np.ndarray, titles: list[str], ncols: int = 6, title: str = "") -> Figure:
    """A grid of test images (H×W or H×W×3 arrays in [0, 1]) with their captions."""
    n = len(images)
    nrows = max(1, int(np.ceil(n / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.9 * ncols, 2.2 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, text in zip(axes.flat, images, titles):
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
        ax.set_title(text, fontsize=7)
    if title:
        fig.suptitle(title)
    return fig


__all__ = ["dose_response", "examples", "gap_vs", "generalisation_gap", "init_spread", "lr_selection", "main_results",
           "per_class", "placement", "rank_curve", "sensitivity"]
