"""An ipywidgets explorer of the run store: pick dataset / backbone / regimes, see the rank curve and tables.

Nothing trains here: every view is computed from ``load_results()`` (re-read by the Reload button), so it
shows whatever runs exist — the ablation pair has the full rank sweep, every other pair the `pair_ranks` sweep.
:func:`render` is the same view without widgets, for static HTML (widgets need a live kernel).
"""
from __future__ import annotations

import os

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..adapter import AdapterConfig
from ..store.table import load_results
from . import experiments, result_plots
from ..regimes import methods
from .notebooks import HEADLESS_ENV
from .tables import knob_table, method_label

KNOBS = ["method", "rank", "every", "start", "init", "scale", "lr", "weight_decay", "epochs"]
METRICS = ("test_acc", "best_val_acc", "train_eval_acc")


def _label(value) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "—"
    return f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def pair_view(df: pd.DataFrame, dataset: str, backbone: str, regimes: tuple[str, ...] | None = None,
              metric: str = "test_acc") -> pd.DataFrame:
    """Seed summaries of ``metric`` for every distinct configuration of one pair, restricted to ``regimes``."""
    if metric not in METRICS:
        raise ValueError(f"metric={metric!r} is not allowed: choose one of {METRICS}")
    rows = df[(df["dataset"] == dataset) & (df["backbone"] == backbone) & df["method"].isin(regimes or methods())]
    rows = rows[rows["test_acc"].notna()]  # validation-only runs (fit's learning-rate proxies) have no test score
    if rows.empty:
        return pd.DataFrame(columns=KNOBS + ["seeds", metric])
    rows = rows.assign(test_acc=rows[metric]) if metric != "test_acc" else rows
    keys = [k for k in KNOBS if k in rows]
    filled = rows.assign(**{k: rows[k].map(_label) for k in keys})  # strings: None and numbers group and sort together
    table = knob_table(filled, keys, extra=("trainable_params",))
    table["method"] = table["method"].map(method_label)
    return table.rename(columns={"test_acc": metric})


def recipe_runs(df: pd.DataFrame, dataset: str, backbone: str) -> pd.DataFrame:
    """The pair's runs at its profile's recipe (lr, weight decay, epochs) and, for adapters, the default knobs
    (every=1, start=0, zero init, scale 1): what the rank curve may average over seeds, without the
    sensitivity runs that share a rank but change lr or weight decay."""
    rows = df[(df["dataset"] == dataset) & (df["backbone"] == backbone)]
    if rows["profile"].nunique() > 1:
        raise ValueError(f"runs of several profiles {sorted(rows['profile'].unique())} for {dataset}/{backbone}: "
                         "filter the frame to one profile first")
    if rows.empty:
        return rows
    recipe = experiments.recipe(rows["profile"].iloc[0], dataset)
    at_recipe = (np.isclose(rows["lr"].astype(float), recipe["lr"])
                 & np.isclose(rows["weight_decay"].astype(float), recipe["weight_decay"])
                 & (rows["epochs"] == recipe["epochs"]))
    defaults = AdapterConfig()
    default_adapter = np.logical_and.reduce([rows[k] == getattr(defaults, k) for k in ("every", "start", "init", "scale")])
    return rows[at_recipe & ((rows["method"] != "adapter") | default_adapter)]


def render(df: pd.DataFrame, dataset: str, backbone: str, regimes: tuple[str, ...] | None = None,
           metric: str = "test_acc") -> tuple[Figure | None, pd.DataFrame]:
    """The rank curve of this pair's recipe runs (references: head / full) and a table of every configuration."""
    regimes = regimes or methods()
    rows = recipe_runs(df, dataset, backbone)
    adapters = rows[rows["method"] == "adapter"]
    fig = None
    if "adapter" in regimes and not adapters.empty:
        curve = adapters.assign(test_acc=adapters[metric])
        refs = rows[rows["method"].isin([m for m in regimes if m != "adapter"])].assign(test_acc=lambda d: d[metric])
        fig = result_plots.rank_curve(curve, refs, title=f"{dataset} / {backbone}: {metric} vs rank")
    return fig, pair_view(df, dataset, backbone, regimes, metric)


def _load(root, profile: str | None) -> pd.DataFrame:
    df = load_results(root)
    return df[df["profile"] == profile] if profile is not None else df


def show(df: pd.DataFrame | None = None, root=None, profile: str | None = None):
    """Display the widget explorer (needs a live kernel); returns the widget. ``profile`` keeps that profile's runs
    (also after Reload), so smoke and mini runs of the same pair never mix."""
    if os.environ.get(HEADLESS_ENV):
        print("The explorer's widgets need a live kernel (open this notebook in JupyterLab); a headless run shows the "
              "static view below.")
        return None
    import ipywidgets as widgets
    from IPython.display import clear_output, display

    if df is None:
        df = _load(root, profile)
    elif profile is not None:
        df = df[df["profile"] == profile]
    state = {"df": df}
    pairs = state["df"][["dataset", "backbone"]].drop_duplicates()
    dataset = widgets.Dropdown(options=sorted(pairs["dataset"].unique()), description="dataset")
    backbone = widgets.Dropdown(options=sorted(pairs["backbone"].unique()), description="backbone")
    regimes = widgets.SelectMultiple(options=[(method_label(m), m) for m in methods()], value=methods(),
                                     description="regimes")
    metric = widgets.Dropdown(options=METRICS, description="metric")
    reload = widgets.Button(description="Reload store")
    out = widgets.Output()

    def update(*_):
        with out:
            clear_output(wait=True)
            if dataset.value is None or backbone.value is None:
                print("the run store has no finished runs")
                return
            fig, table = render(state["df"], dataset.value, backbone.value, tuple(regimes.value), metric.value)
            if fig is not None:
                display(fig)
                plt.close(fig)
            display(table)

    def on_reload(_):
        state["df"] = _load(root, profile)
        update()

    for w in (dataset, backbone, regimes, metric):
        w.observe(update, names="value")
    reload.on_click(on_reload)
    box = widgets.VBox([widgets.HBox([dataset, backbone, metric, reload]), regimes, out])
    display(box)
    update()
    return box


__all__ = ["METRICS", "pair_view", "recipe_runs", "render", "show"]
