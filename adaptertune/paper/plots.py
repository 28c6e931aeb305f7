"""The figures' infrastructure and the figures of notebooks 01–02. One place decides file names (``FIGURES``, for every
notebook's figures; those of 03–05 are drawn in ``result_plots``) and style (``set_style``).

Each function takes tidy DataFrames (from the ``tables``, ``theory`` or ``analysis`` modules of this floor; the elbow
figure also the results of ``elbow``) and returns a matplotlib Figure; :func:`save` writes PNG + PDF under
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
from ..profiles import SMOKE_STAMP, profile_record
from .elbow import MeasuredElbow, PredictedElbow
from ..regimes import REGIMES, regime
from .tables import method_label

# figure key -> file stem; the notebooks refer to figures by key only.
FIGURES = {
    "placement_schematic": "fig01_adapter_placement",
    "early_training": "fig01_zero_vs_random_early_training",
    "spectra": "fig02_task_shift_spectra",
    "tail": "fig02_eckart_young_tail",
    "adapter_spectra": "fig02_adapter_spectra",
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
SMOKE_LABEL = SMOKE_STAMP


def regime_palette() -> dict[str, str]:
    """Each regime's label -> its colour, from the registry (read live)."""
    return {r.label: r.colour for r in REGIMES.values()}


def regime_order() -> list[str]:
    """Regime labels in the registry's order: the hue order of every figure."""
    return [r.label for r in REGIMES.values()]


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
    stamp = profile_record(profile).stamp if profile is not None else None
    if stamp:
        fig.text(0.5, 0.5, stamp, ha="center", va="center", rotation=20, fontsize=16, color="red", alpha=0.55,
                 fontweight="bold", transform=fig.transFigure, zorder=1000)
        fig.suptitle(stamp, color="red", fontweight="bold")
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


def missing_runs(what: str) -> Figure:
    """The placeholder of a figure whose runs are not in the store yet."""
    return placeholder(f"{what}\n(the notebook's first table says which runs are missing and how to make them)")


def _or_placeholder(plot: Callable[..., Figure]) -> Callable[..., Figure]:
    """Draw ``plot`` unless its data (the first argument) is empty: then a placeholder naming the missing runs."""
    @functools.wraps(plot)
    def wrapper(data, *args, **kwargs) -> Figure:
        if len(data) == 0:
            return missing_runs(f"{plot.__name__.replace('_', ' ')}: no runs in the store yet")
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
    frozen, train = "#c9d6df", regime("adapter").colour

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
    """Training loss over the first updates, zero vs random init: left the mean ± sd over seeds per init, right
    the paired difference random − zero per seed (same seed = same data order), where a drift would show."""
    data = steps if max_epochs is None else steps[steps["epoch"] <= max_epochs]
    if data.empty:
        return placeholder(f"early training: no logged step has epoch <= {max_epochs:g} (epochs are logged from 1)")
    n = data.groupby("init")["seed"].nunique()
    data = data.assign(init_n=[f"{i} init (n={n[i]} seeds)" for i in data["init"]])
    palette = {f"{i} init (n={n[i]} seeds)": c for i, c in (("zero", "#d1495b"), ("random", "#30638e")) if i in n}
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    sns.lineplot(data=data, x="step", y="loss", hue="init_n", errorbar="sd", palette=palette, ax=left)
    left.set(xlabel="update (optimizer step)", ylabel="batch training loss (cross-entropy, nats)",
             title="Loss per update: mean ± sd over seeds")
    left.legend(title=None, fontsize=8)
    wide = data.pivot_table(index=["seed", "step"], columns="init", values="loss")
    if {"zero", "random"} <= set(wide.columns):
        diff = (wide["random"] - wide["zero"]).dropna().rename("diff").reset_index()
        k = diff["seed"].nunique()
        sns.lineplot(data=diff, x="step", y="diff", units="seed", estimator=None, color="0.6", lw=0.8, ax=right)
        sns.lineplot(data=diff, x="step", y="diff", errorbar=None, color="k", lw=1.8, ax=right,
                     label=f"mean over the n={k} seeds (grey: each seed)")
        spread = wide["zero"].groupby(level="step").std(ddof=1)  # the scale a real drift would have to beat
        right.fill_between(spread.index, -spread, spread, color="#d1495b", alpha=0.12,
                           label="± sd of the zero-init loss over seeds")
        right.axhline(0, color=regime("adapter").colour, lw=1, ls="--", label="no difference")
        right.legend(fontsize=8)
    else:
        right.text(0.5, 0.5, "needs runs of both inits with the same seeds", ha="center", va="center",
                   transform=right.transAxes, color="0.35")
    right.set(xlabel="update (optimizer step)", ylabel="loss(random) − loss(zero) (nats)",
              title="Paired difference random − zero (same seed: same batches)")
    shown = sorted(int(e) for e in data["epoch"].unique())
    fig.suptitle("Early training with zero vs small random adapter init: "
                 + (f"epoch {shown[0]}" if len(shown) == 1 else f"epochs {shown[0]}–{shown[-1]}")
                 + f" as logged (1 = first), {data['step'].nunique()} updates")
    fig.tight_layout()
    return fig


# -- notebook 02 --------------------------------------------------------------------------------------
def _log2_ranks(ax: plt.Axes, ranks) -> None:
    """Log-2 x axis with a tick at each rank of the grid, labelled with the rank itself."""
    ranks = sorted({int(r) for r in ranks})
    ax.set_xscale("log", base=2)
    ax.set_xticks(ranks, labels=[str(r) for r in ranks])
    ax.minorticks_off()


def _runs_note(frame: pd.DataFrame) -> str:
    return f"n={frame['run_id'].nunique()} run(s)" if "run_id" in frame else ""


@_or_placeholder
def spectra(spectrum: pd.DataFrame, summary: pd.DataFrame, title: str = "", fit_top: int | None = None) -> Figure:
    """Per block, the plain singular values σ_i of the least-squares shift M (with the fitted ``c·i^(−α)`` over the
    fitted indices 1..``fit_top``) next to the data-weighted ones of ``M Σ_h^{1/2}``; mean over runs."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True)
    kw = dict(hue="block", palette="viridis", marker=".", errorbar=None, legend="full")
    sns.lineplot(data=spectrum, x="i", y="sigma", ax=left, **kw)
    i = np.arange(1, (fit_top or spectrum["i"].max()) + 1)
    for _, row in summary.groupby("block")[["c", "alpha"]].mean().iterrows():
        left.plot(i, row["c"] * i ** (-row["alpha"]), ls=":", lw=1.2, color="0.3")
    left.set(yscale="log", ylabel=r"$\sigma_i(M)$ (output per unit input)",
             title=r"plain $\sigma_i(M)$; dotted: fitted $c\,i^{-\alpha}$" + (f" (i ≤ {fit_top})" if fit_top else ""))
    sns.lineplot(data=spectrum, x="i", y="tau", ax=right, **{**kw, "legend": False})
    right.set(yscale="log", ylabel=r"$\tau_i$ (units of the block output)",
              title=r"data-weighted $\tau_i = \sigma_i(M\,\Sigma_h^{1/2})$")
    for ax in (left, right):
        _log2_ranks(ax, 2 ** np.arange(int(np.log2(spectrum["i"].max())) + 1))
        ax.set_xlabel("index i (largest first, log scale)")
    left.legend(title="block", fontsize=7, ncols=2)
    fig.suptitle((title or "Task-shift spectra per block") + f"\nmean over {_runs_note(spectrum)}; "
                 r"$\Sigma_{i>r}\tau_i^2$ is the mean squared error the best rank-r map loses on the tokens")
    fig.tight_layout()
    return fig


@_or_placeholder
def tail(tails: pd.DataFrame, title: str = "") -> Figure:
    """Share of the linear shift's energy the best rank-r map loses, plain (of ‖M‖_F²) vs data-weighted (of
    Σ τ²), mean ± sd over blocks and runs, at each rank of the grid."""
    n = len(tails.groupby([c for c in ("run_id", "block") if c in tails]).size())
    long = tails.melt(id_vars=["rank"], value_vars=["tail_share", "tail_w_share"], var_name="spectrum", value_name="share")
    long["spectrum"] = long["spectrum"].map({"tail_share": r"plain: $\Sigma_{i>r}\sigma_i^2 / \Sigma\sigma_i^2$",
                                             "tail_w_share": r"data-weighted: $\Sigma_{i>r}\tau_i^2 / \Sigma\tau_i^2$"})
    fig, ax = plt.subplots(figsize=(6.8, 4))
    sns.lineplot(data=long, x="rank", y="share", hue="spectrum", style="spectrum", markers=True, errorbar="sd", ax=ax,
                 palette=["0.45", regime("adapter").colour])
    _log2_ranks(ax, tails["rank"])
    ax.set(xlabel="adapter rank r (log scale)", ylabel="share of the energy lost (0–1)", ylim=(0, 1.02),
           title=(title or "Eckart–Young tail of the task shift") + f"\nmean ± sd over n={n} blocks × runs")
    ax.legend(title=None, fontsize=8)
    return fig


@_or_placeholder
def adapter_spectra(spectrum: pd.DataFrame, probe_rank: int | None = None, title: str = "") -> Figure:
    """How many directions each map uses: cumulative share of its data-weighted energy held by the top-i
    directions, per block, for full FT's task shift and a trained adapter (its residual on real block outputs
    and its linearisation at 0); mean ± sd over runs (seeds), n per kind in the legend."""
    counts = spectrum.groupby("kind", sort=False)["run_id"].nunique()
    data = spectrum.assign(map=[f"{k} (n={counts[k]} runs)" for k in spectrum["kind"]])
    grid = sns.relplot(data=data, x="i", y="cum_w_share", hue="map", style="map", col="block", col_wrap=3, kind="line",
                       errorbar="sd", height=2.8, aspect=1.25, palette="deep", facet_kws={"sharey": True})
    grid.set_titles("block {col_name}")
    for ax in grid.axes.flat:
        _log2_ranks(ax, 2 ** np.arange(int(np.log2(data["i"].max())) + 1))
        ax.axhline(0.9, color="0.6", lw=0.8, ls=":")
        if probe_rank is not None:
            ax.axvline(probe_rank, color="k", lw=0.8, ls="--")
    grid.set_axis_labels("top-i directions (log scale)", "share of weighted energy")
    grid.set(ylim=(0, 1.02))
    sns.move_legend(grid, "lower center", bbox_to_anchor=(0.5, 0), ncols=3, title=None, frameon=False)
    extra = f"; dashed: r={probe_rank}" if probe_rank is not None else ""
    grid.figure.suptitle((title or "How many directions each map uses") + "\ncumulative share of the weighted energy "
                         r"$\Sigma_{j\leq i}\tau_j^2 / \Sigma\tau_j^2$, mean ± sd over runs (dotted: 90%" + extra + ")")
    grid.figure.subplots_adjust(top=0.84, bottom=0.16, right=0.98, hspace=0.35)
    return grid.figure


def _accuracy_vs_rank(rank_runs: pd.DataFrame, label: str, ax: plt.Axes | None = None) -> tuple[Figure, plt.Axes]:
    """The measured rank curve both rank figures draw: mean ± sd test accuracy over seeds, log-r axis."""
    fig, ax = plt.subplots(figsize=(6.5, 4)) if ax is None else (ax.figure, ax)
    data = rank_runs.assign(acc=100 * rank_runs["test_acc"])
    sns.lineplot(data=data, x="rank", y="acc", errorbar="sd", marker="o", color=regime("adapter").colour, ax=ax,
                 label=label)
    ranks = sorted({int(r) for r in data["rank"]})
    ax.set(xscale="log", xlabel="adapter rank r", ylabel="test accuracy (%)")
    ax.set_xticks(ranks, labels=[str(r) for r in ranks])
    return fig, ax


@_or_placeholder
def elbow_overlay(rank_runs: pd.DataFrame, tails: pd.DataFrame, predicted: PredictedElbow | None = None,
                  measured: MeasuredElbow | None = None, title: str = "") -> Figure:
    """Two panels on one log-rank axis. Top: measured test accuracy (mean ± sd over seeds) with the measured
    elbow; bottom: the share of the task shift the best rank-r map misses, split into the nonlinear residual
    (1 − R², no rank helps) and the data-weighted linear tail. The predicted elbow range is shaded in both."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 8.2), sharex=True, height_ratios=(1.2, 1))
    seeds = rank_runs.groupby("rank")["seed"].nunique()
    n_seeds = f"n={seeds.min()}" if seeds.min() == seeds.max() else f"n={seeds.min()}–{seeds.max()}"
    _accuracy_vs_rank(rank_runs, f"AdapterTune test accuracy, mean ± sd over {n_seeds} seeds", ax=top)
    if predicted is not None and predicted.low is not None:
        es = predicted.table["energy"]
        high = max(int(r) for r in rank_runs["rank"]) if predicted.beyond else predicted.high
        label = (f"predicted elbow {predicted.span}: smallest ranks holding e={es.min():g}–{es.max():g} of the "
                 f"weighted task-shift energy (n={predicted.n_runs} full-FT run{'s' if predicted.n_runs != 1 else ''})")
        for ax in (top, bottom):
            ax.axvspan(predicted.low / 1.12, high * 1.12, color="0.85", zorder=0, label=label if ax is top else None)
    if measured is not None:
        test = f"paired t over seeds, {100 * measured.level:g}% interval"
        if measured.elbow is not None:
            top.axvline(measured.elbow, color="k", ls="--", lw=1.2, label=f"measured elbow r={measured.elbow} ({test})")
            low, high = measured.span
            if low < high:
                top.axvspan(low, high, color="k", alpha=0.12, label=f"the elbow may lie in r={low}–{high}")
        else:
            what = "no elbow within the grid" if measured.edge else "elbow untestable"
            top.plot([], [], " ", label=f"measured: {what} ({test})")
    top.set(xlabel="", title="Measured: test accuracy vs rank")
    if len(tails):
        n = len(tails.groupby([c for c in ("run_id", "block") if c in tails]).size())
        mean = tails.groupby("rank")[["nonlinear_share", "lost_share"]].mean()
        r = mean.index.to_numpy(dtype=float)
        bottom.fill_between(r, 0, mean["nonlinear_share"], color="0.55", alpha=0.8,
                            label="nonlinear residual 1 − R² (no linear map captures it)")
        bottom.fill_between(r, mean["nonlinear_share"], mean["nonlinear_share"] + mean["lost_share"],
                            color=regime("full").colour, alpha=0.6,
                            label=r"linear tail $\Sigma_{i>r}\tau_i^2 / \mathrm{Var}(\Delta)$ (lost by the best rank-r map)")
        bottom.set(ylim=(0, 1.02), title=f"Theory: share of the task shift missed at rank r (mean over n={n} blocks × runs)")
    else:
        bottom.text(0.5, 0.5, "no full fine-tuning run in the store: no task shift measured", ha="center",
                    va="center", transform=bottom.transAxes, color="0.35")
    bottom.set(xlabel="adapter rank r (log scale)", ylabel=r"share of $\mathrm{Var}(\Delta)$ (0–1)")
    _log2_ranks(bottom, rank_runs["rank"])
    handles, labels = (sum(x, []) for x in zip(*(ax.get_legend_handles_labels() for ax in (top, bottom))))
    for ax in (top, bottom):
        if ax.get_legend():
            ax.get_legend().remove()
    fig.legend(handles, labels, loc="lower center", fontsize=8, frameon=False)  # below the axes: never over the data
    fig.suptitle(title or "Rank elbow: predicted from the task shift vs measured")
    fig.tight_layout(rect=(0, 0.022 * len(labels) + 0.01, 1, 1))
    return fig


def bound(table: pd.DataFrame, n: int | None = None) -> Figure:
    """Synthetic check: error of the best rank-r map vs the bound ``B² Σ_{i>r} σ_i²`` (left) and their ratio
    (right: ≤ 1 means the bound holds). Ranks where the bound is exactly 0 (r ≥ rank M) are left out and named."""
    zero = table[table["bound"] == 0]
    shown = table[table["bound"] > 0]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.9), sharex=True)
    long = shown.melt(id_vars="rank", value_vars=["mse", "bound"], var_name="quantity", value_name="value")
    long["quantity"] = long["quantity"].map({"mse": r"measured $E\|\Delta(h) - A_r(h)\|^2$",
                                             "bound": r"bound $B^2\,\Sigma_{i>r}\sigma_i^2$"})
    sns.lineplot(data=long, x="rank", y="value", hue="quantity", style="quantity", markers=True, ax=left)
    left.set(yscale="log", xlabel="rank r (log scale)", ylabel=r"squared error (units of $\|\Delta\|^2$)",
             title="Error of the best rank-r map and the bound")
    left.legend(title=None, fontsize=8)
    ratio = shown.assign(ratio=shown["mse"] / shown["bound"])
    sns.lineplot(data=ratio, x="rank", y="ratio", marker="o", color="k", ax=right, label="measured / bound")
    right.axhline(1, color=regime("adapter").colour, ls="--", lw=1, label="bound met with equality")
    right.set(yscale="log", ylim=(min(ratio["ratio"].min() / 3, 0.5), 2), xlabel="rank r (log scale)",
              ylabel="measured / bound", title="Tightness (below 1: the bound holds)")
    right.legend(fontsize=8, loc="center right")
    for ax in (left, right):
        _log2_ranks(ax, shown["rank"])
    note = (f"\nat r={', '.join(str(int(r)) for r in zero['rank'])} the bound is exactly 0 and the error "
            f"{zero['mse'].max():.0e} (float round-off): not drawn") if len(zero) else ""
    fig.suptitle(f"Synthetic linear shift, one draw{f' of n={n} inputs' if n else ''} with ‖h‖ ≤ B{note}")
    fig.tight_layout()
    return fig


__all__ = ["FIGURES", "regime_order", "regime_palette", "SMOKE_LABEL", "adapter_spectra", "bound", "early_training",
           "elbow_overlay", "figure_dir", "missing_runs", "placeholder", "placement_schematic", "save", "set_style", "spectra",
           "tail"]
