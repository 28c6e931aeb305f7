"""The figures' infrastructure and the figures of notebooks 01–02. One place decides file names (``FIGURES``, for every
notebook's figures; those of 03–05 are drawn in ``result_plots``) and style (``set_style``).

Each function takes tidy DataFrames (from the ``tables``, ``theory`` or ``analysis`` modules of this floor) and
returns a matplotlib Figure; :func:`save` writes PNG + PDF under
``figures/<profile>/`` and, on profile smoke, stamps "SMOKE — plumbing only, not results" across it so a
plumbing figure can never pass for a result.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from ..paths import figures_dir
from .tables import METHOD_LABELS, method_label

# figure key -> file stem; the notebooks refer to figures by key only.
FIGURES = {
    "placement_schematic": "fig01_adapter_placement",
    "early_training": "fig01_zero_vs_random_early_training",
    "spectra": "fig02_task_shift_spectra",
    "tail": "fig02_eckart_young_tail",
    "elbow_overlay": "fig02_predicted_vs_measured_elbow",
    "bound": "fig02_synthetic_bound",
    "main_results": "fig03_main_results",
    "generalisation_gap": "fig03_generalisation_gap",
    "lr_selection": "fig03_lr_selection",
    "rank_curve": "fig04_rank_elbow",
    "placement": "fig04_placement_tradeoff",
    "init": "fig04_init_seed_spread",
    "sensitivity": "fig04_sensitivity",
    "gap_vs_shift": "fig05_gap_vs_domain_shift",
    "gap_vs_width": "fig05_gap_vs_backbone_width",
    "dose_response": "fig05_dose_response",
    "per_class": "fig05_per_class_errors",
    "examples": "fig05_misclassified_examples",
    "multitask_predictions": "fig06_mixed_batch_predictions",
}
SMOKE_LABEL = "SMOKE — plumbing only, not results"
REGIME_PALETTE = {METHOD_LABELS["head"]: "#8c8c8c", METHOD_LABELS["adapter"]: "#d1495b", METHOD_LABELS["full"]: "#00798c"}
REGIME_ORDER = [METHOD_LABELS[m] for m in ("head", "adapter", "full")]


def set_style() -> None:
    """The one style of every figure: seaborn whitegrid, paper context, a fixed regime palette."""
    sns.set_theme(style="whitegrid", context="notebook", font_scale=0.9)
    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 150, "savefig.bbox": "tight", "axes.titleweight": "bold"})


def figure_dir(profile: str) -> Path:
    return figures_dir() / profile


def save(fig: Figure, key: str, profile: str, out_dir: str | Path | None = None) -> dict[str, Path]:
    """Write ``<stem>.png`` and ``<stem>.pdf``; on profile smoke the figure is stamped first."""
    if key not in FIGURES:
        raise ValueError(f"figure key {key!r} is unknown: choose one of {sorted(FIGURES)}")
    if profile == "smoke":
        fig.text(0.5, 0.5, SMOKE_LABEL, ha="center", va="center", rotation=20, fontsize=16, color="red", alpha=0.55,
                 fontweight="bold", transform=fig.transFigure, zorder=1000)
        fig.suptitle(SMOKE_LABEL, color="red", fontweight="bold")
    out = Path(out_dir) if out_dir is not None else figure_dir(profile)
    out.mkdir(parents=True, exist_ok=True)
    paths = {ext: out / f"{FIGURES[key]}.{ext}" for ext in ("png", "pdf")}
    for ext, path in paths.items():  # no creation date in the PDF: a figure is a pure function of the runs
        fig.savefig(path, metadata={"CreationDate": None} if ext == "pdf" else None)
    return paths


def placeholder(text: str) -> Figure:
    """A figure that says what is missing, so a partial store still renders every figure slot."""
    fig, ax = plt.subplots(figsize=(6, 2.2))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=11, color="0.35", wrap=True)
    return fig


def _or_placeholder(plot: Callable[..., Figure]) -> Callable[..., Figure]:
    """Draw ``plot`` unless its data (the first argument) is empty: then a placeholder naming the missing runs."""
    @functools.wraps(plot)
    def wrapper(data, *args, **kwargs) -> Figure:
        if len(data) == 0:
            return placeholder(f"{plot.__name__.replace('_', ' ')}: no runs in the store yet\n"
                               "(the notebook's first table says which runs are missing and how to make them)")
        return plot(data, *args, **kwargs)
    return wrapper


def _regime(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    out["regime"] = out["method"].map(method_label)
    return out


# -- notebook 01 --------------------------------------------------------------------------------------
def placement_schematic(depth: int = 6, every: int = 1, start: int = 0) -> Figure:
    """Where adapters sit: on the *whole* block output (not inside the MLP), residual ``h + s·A(h)``."""
    adapted = set(range(start, depth, every))
    step = 2.1
    fig, ax = plt.subplots(figsize=(1.5 + 1.6 * depth, 3.6))
    ax.set_xlim(-1.3, step * depth + 0.7), ax.set_ylim(-1.6, 1.7), ax.axis("off"), ax.set_aspect("equal")
    frozen, train = "#c9d6df", REGIME_PALETTE[METHOD_LABELS["adapter"]]

    def box(x, y, w, h, fill, text, **kw):
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.04", fc=fill, ec="k", lw=1))
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=8, **kw)

    def arrow(a, b):
        ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=10, color="k", lw=1, shrinkA=0, shrinkB=0))

    box(-1.2, -0.45, 0.8, 0.9, frozen, "patch\nembed")
    arrow((-0.4, 0), (0, 0))
    for i in range(depth):
        x = step * i
        box(x, -0.45, 1.0, 0.9, frozen, f"block {i}\n(frozen)")
        nxt = x + step
        if i in adapted:
            xc = x + 1.6
            ax.add_patch(plt.Circle((xc, 0), 0.13, fc="white", ec="k", lw=1, zorder=3))
            ax.text(xc, 0, "+", ha="center", va="center", fontsize=10, fontweight="bold", zorder=4)
            box(xc - 0.25, 0.85, 0.5, 0.5, train, "A", color="white", fontweight="bold")
            arrow((x + 1.0, 0), (xc - 0.13, 0))
            ax.plot([x + 1.15, x + 1.15], [0, 1.1], color="k", lw=1)  # branch: h goes to the adapter ...
            arrow((x + 1.15, 1.1), (xc - 0.25, 1.1))
            arrow((xc, 0.85), (xc, 0.13))  # ... and s·A(h) is added back
            arrow((xc + 0.13, 0), (nxt, 0))
        else:
            arrow((x + 1.0, 0), (nxt, 0))
    box(step * depth, -0.45, 0.5, 0.9, train, "head", rotation=90, color="white")
    ax.text(-1.2, -0.95, r"$h' = h + s\,(W_{up}\,\mathrm{GELU}(W_{down}h + b_{down}) + b_{up})$;  "
            r"$W_{up}=0,\ b_{up}=0$ at init  $\Rightarrow$  $h' = h$ exactly", fontsize=9)
    ax.text(-1.2, -1.4, f"red = trainable, grey = frozen; adapters on blocks {sorted(adapted)} (every={every}, start={start})",
            fontsize=8, color="0.3")
    return fig


@_or_placeholder
def early_training(steps: pd.DataFrame, max_epochs: float | None = None) -> Figure:
    """Training loss over the first updates, zero vs random init (one line per seed): no early drift."""
    data = steps if max_epochs is None else steps[steps["epoch"] < max_epochs]
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    sns.lineplot(data=data, x="step", y="loss", hue="init", style="init", units="seed", estimator=None, ax=ax,
                 alpha=0.8, palette={"zero": "#d1495b", "random": "#30638e"}, dashes={"zero": "", "random": (3, 2)})
    ax.set(xlabel="update", ylabel="training loss (global batch)", title="Early training: zero vs random adapter init")
    return fig


# -- notebook 02 --------------------------------------------------------------------------------------
@_or_placeholder
def spectra(spectrum: pd.DataFrame, summary: pd.DataFrame, title: str = "") -> Figure:
    """Singular values of the estimated task shift per block (log-log) with each block's fitted power law."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    sns.lineplot(data=spectrum, x="i", y="sigma", hue="block", palette="viridis", ax=ax, marker=".", legend="full")
    for _, row in summary.iterrows():
        i = np.arange(1, spectrum["i"].max() + 1)
        ax.plot(i, row["c"] * i ** (-row["alpha"]), ls=":", lw=1, color="0.4")
    ax.set(xscale="log", yscale="log", xlabel="index i", ylabel=r"$\sigma_i$ of the least-squares shift $M$",
           title=title or r"Task-shift spectra (dotted: fitted $c\,i^{-\alpha}$)")
    return fig


@_or_placeholder
def tail(tails: pd.DataFrame, title: str = "") -> Figure:
    """Relative Eckart–Young tail ``sqrt(Σ_{i>r} σ_i²)/‖M‖_F`` vs rank, per block."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    sns.lineplot(data=tails, x="rank", y="tail_rel", hue="block", palette="viridis", marker="o", ax=ax)
    ax.set(xscale="log", xlabel="adapter rank r", ylabel="relative tail error", ylim=(0, 1.02),
           title=title or "Best rank-r approximation error of the task shift")
    ranks = sorted({int(r) for r in tails["rank"]})
    ax.set_xticks(ranks, labels=[str(r) for r in ranks])
    return fig


def _accuracy_vs_rank(rank_runs: pd.DataFrame, label: str) -> tuple[Figure, plt.Axes]:
    """The measured rank curve both rank figures draw: mean ± sd test accuracy over seeds, log-r axis."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    data = rank_runs.assign(acc=100 * rank_runs["test_acc"])
    sns.lineplot(data=data, x="rank", y="acc", errorbar="sd", marker="o", color=REGIME_PALETTE["AdapterTune"], ax=ax,
                 label=label)
    ranks = sorted({int(r) for r in data["rank"]})
    ax.set(xscale="log", xlabel="adapter rank r", ylabel="test accuracy (%)")
    ax.set_xticks(ranks, labels=[str(r) for r in ranks])
    return fig, ax


@_or_placeholder
def elbow_overlay(rank_runs: pd.DataFrame, tails: pd.DataFrame, predicted: int | None,
                  measured: int | None = None) -> Figure:
    """Measured accuracy vs rank (mean ± sd over seeds) beside the mean tail, with the predicted elbow marked."""
    fig, ax = _accuracy_vs_rank(rank_runs, "test accuracy (runs)")
    ax2 = ax.twinx()
    mean_tail = tails.groupby("rank")["tail_rel"].mean()
    ax2.plot(mean_tail.index, mean_tail.values, ls="--", color="0.35", marker="s", ms=3, label="mean relative tail (theory)")
    ax2.set(ylabel="relative tail error", ylim=(0, 1.02)), ax2.grid(False)
    if predicted is not None:
        ax.axvline(predicted, color="k", ls=":", lw=1.5)
        ax.text(predicted, ax.get_ylim()[0], f" predicted elbow r={predicted}", rotation=90, va="bottom", fontsize=8)
    if measured is not None:
        ax.axvline(measured, color=REGIME_PALETTE["AdapterTune"], ls="-.", lw=1)
        ax.text(measured, ax.get_ylim()[1], f" measured r={measured}", rotation=90, va="top", fontsize=8)
    ax.set(title="Elbow: theory vs measurement")
    lines = ax.get_legend_handles_labels(), ax2.get_legend_handles_labels()
    ax.legend(lines[0][0] + lines[1][0], lines[0][1] + lines[1][1], loc="center right", fontsize=8)
    return fig


def bound(table: pd.DataFrame) -> Figure:
    """Synthetic check: measured error of the best rank-r map vs the bound ``B² Σ_{i>r} σ_i²``."""
    fig, ax = plt.subplots(figsize=(6, 3.8))
    long = table.melt(id_vars="rank", value_vars=["mse", "bound"], var_name="quantity", value_name="value")
    sns.lineplot(data=long, x="rank", y="value", hue="quantity", style="quantity", markers=True, ax=ax)
    ax.set(xscale="log", yscale="log", xlabel="rank r", ylabel=r"$E\|\Delta(h) - A_r(h)\|^2$",
           title="Synthetic linear shift: the bound holds")
    return fig


__all__ = ["FIGURES", "REGIME_ORDER", "REGIME_PALETTE", "SMOKE_LABEL", "bound", "early_training", "elbow_overlay",
           "figure_dir", "placeholder", "placement_schematic", "save", "set_style", "spectra", "tail"]
