"""Every table of the paper, as a pure function of the results DataFrame (``adaptertune.load_results()``).

Accuracies in the store are fractions; tables show percentage points with ``mean ± std`` over seeds
(sample std, ddof=1; a single seed shows ``(n=1)`` instead of a std). Comparisons ("wins") use the seed
means. The sentences that compare these tables with the paper live in ``verdicts.py``. Files land in ``figures/tables/<profile>/``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..adapter import AdapterConfig
from ..backbones import backbone_shape
from ..data import DATASETS
from ..regimes import REGIMES, expected_trainable, methods, regime
from . import stats

from ..atomic import atomic_write_bytes
from ..paths import figures_dir
from ..profiles import profile_record

def method_label(method: str) -> str:
    """The regime's display name from its record (an unknown method shows as itself)."""
    return REGIMES[method].label if method in REGIMES else method


PAIR = ["dataset", "backbone"]


# -- the main comparison's unit: a backbone family, replicated over pretraining runs ---------------------------------
def by_family(df: pd.DataFrame) -> pd.DataFrame:
    """The main comparison with ``backbone`` set to the backbone's ``family`` (``mini-s`` for ``mini-s.p1``).

    Mini seed s trains on pretraining replicate s, so grouping by family and pairing regimes by seed pairs them within
    one pretraining run: n then counts backbones. Where a family holds replicates, only the runs on the seed's own
    replicate stay (extra seeds on the base backbone belong to the variance components, not to these cells). A frame
    without a ``family`` column (older stores, the paper profile before the column) is returned as it is.
    """
    if "family" not in df.columns:
        return df
    out = df
    if "replicate" in df.columns and len(df):
        replicated = df.groupby("family")["replicate"].transform("max") > 0
        out = df[~replicated | (df["replicate"].astype(int) == df["seed"].astype(int))]
    return out.assign(backbone=out["family"])


def family_frames(frames: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """:func:`by_family` of every protocol's runs: what the main comparison's tables, figures and controls read."""
    return {protocol: by_family(df) for protocol, df in frames.items()}


def replication_unit(df: pd.DataFrame) -> str:
    """What n counts in the main comparison's cells: ``backbones`` (one pretraining run each, its own training seed)
    when the frame holds pretraining replicates, else ``seeds`` (training seeds on one backbone)."""
    replicated = "replicate" in df.columns and len(df) and (df["replicate"].astype(int) > 0).any()
    return "backbones" if replicated else "seeds"



# -- summaries ----------------------------------------------------------------------------------------
def _require(df: pd.DataFrame, columns: list[str]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"results frame lacks column(s) {missing}; it has {list(df.columns)}")


def seed_summary(df: pd.DataFrame, by: list[str], metric: str = "test_acc") -> pd.DataFrame:
    """Mean, sample std (ddof=1), min, max and n of ``metric`` over the rows of each group (the seeds)."""
    _require(df, by + [metric])
    grouped = df.groupby(by, dropna=False, sort=True)[metric]
    out = grouped.agg(mean="mean", std=lambda s: s.std(ddof=1) if len(s) > 1 else np.nan, min="min", max="max", n="count")
    return out.reset_index()


def pm(mean: float, std: float, n: int, digits: int = 2, expected_n: int | None = None) -> str:
    """``mean ± std`` in points, ``mean (n=1)`` where there is no spread, and ``(n=k)`` appended whenever the cell has
    another number of seeds than the table's caption states (``expected_n``)."""
    if pd.isna(mean):
        return "—"
    if n <= 1 or pd.isna(std):
        return f"{100 * mean:.{digits}f} (n={int(n)})"
    odd = f" (n={int(n)})" if expected_n is not None and n != expected_n else ""
    return f"{100 * mean:.{digits}f} ± {100 * std:.{digits}f}{odd}"


def _ordered_methods(methods) -> list[str]:
    present, order = list(dict.fromkeys(methods)), regime_order()
    return [m for m in order if m in present] + [m for m in present if m not in order]


def methods_in_paper() -> tuple[str, ...]:
    return methods(in_paper=True)


def regime_order() -> tuple[str, ...]:
    """Rows of every table in the registry's order (read live: a newly registered regime is tabled too)."""
    return methods()


def main_table(df: pd.DataFrame, datasets: list[str] | None = None, backbones: list[str] | None = None,
               expected_n: int | None = None, regimes: tuple[str, ...] = ()) -> pd.DataFrame:
    """Tab.2 / Tab.6: rows (backbone, regime), columns datasets, cells ``mean ± std`` of test accuracy.

    Given ``datasets``/``backbones`` the table has every cell of that grid (the paper's regimes and ``regimes``), a
    missing one shown as ``—``; otherwise it spans what ``df`` holds.
    """
    summary = seed_summary(df, ["backbone", "method", "dataset"])
    cells = {(b, m, d): pm(mean, std, n, expected_n=expected_n) for b, m, d, mean, std, n in
             summary[["backbone", "method", "dataset", "mean", "std", "n"]].itertuples(index=False)}
    whole_grid = backbones is not None
    datasets = list(datasets) if datasets is not None else sorted(summary["dataset"].unique())
    backbones = sorted(backbones if whole_grid else summary["backbone"].unique())
    # the whole grid: every paper regime's row (``—`` when missing), and the beyond-the-paper regimes that have runs
    methods = _ordered_methods(list(methods_in_paper() if whole_grid else ()) + list(regimes) + list(summary["method"]))
    rows = [(b, m) for b in backbones for m in methods]
    index = pd.MultiIndex.from_tuples([(b, method_label(m)) for b, m in rows], names=["backbone", "regime"])
    return pd.DataFrame([[cells.get((b, m, d), "—") for d in datasets] for b, m in rows], index=index,
                        columns=pd.Index(datasets, dtype=object))


def stack(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Several protocols' runs in one frame with a ``protocol`` column (for figures and per-protocol tables)."""
    parts = [df.assign(protocol=p) for p, df in frames.items() if len(df)]
    return pd.concat(parts, ignore_index=True) if parts else next(iter(frames.values())).assign(protocol=[])


def main_table_by_protocol(frames: dict[str, pd.DataFrame], datasets: list[str], backbones: list[str],
                           seeds: int) -> pd.DataFrame:
    """Tab.2 under every protocol: rows (backbone, regime), columns ``dataset · protocol``, every cell of the grid
    (``—`` when missing), ``(n=k)`` on cells with another number of seeds than ``seeds``. A regime that only one
    protocol runs (LoRA, BitFit: tuned only) has a row under both, ``—`` where it was not run."""
    present = tuple(dict.fromkeys(m for df in frames.values() if "method" in df for m in df["method"]))
    return by_protocol({p: main_table(by_family(df), datasets, backbones, seeds, present) for p, df in frames.items()},
                       datasets)


def by_protocol(tables: dict[str, pd.DataFrame], datasets: list[str]) -> pd.DataFrame:
    """Tab.2 under several protocols side by side: one column per dataset and protocol (``dataset · protocol``)."""
    wide = pd.concat(tables, axis=1)  # columns (protocol, dataset)
    order = [(p, d) for d in datasets for p in tables if (p, d) in wide.columns]
    wide = wide[order]
    wide.columns = [f"{d} · {p}" for p, d in order]
    return wide


def pair_differences(df: pd.DataFrame, a: str, b: str, metric: str = "test_acc") -> pd.DataFrame:
    """Per (dataset, backbone) with both regimes: ``a − b`` of ``metric`` paired over seeds (fractions), its 95%
    interval, n and the outcome (+1: a ahead beyond the interval, −1: behind, 0: undecided)."""
    rows = []
    for (dataset, backbone), part in df.groupby(PAIR, sort=True):
        runs_a, runs_b = part[part["method"] == a], part[part["method"] == b]
        if runs_a.empty or runs_b.empty:
            continue
        d = stats.difference(runs_a.groupby("seed")[metric].mean(), runs_b.groupby("seed")[metric].mean())
        rows.append({"dataset": dataset, "backbone": backbone, "diff": d.estimate, "low": d.low, "high": d.high,
                     "n": d.n, "how": d.how, "outcome": d.sign})
    return pd.DataFrame(rows, columns=["dataset", "backbone", "diff", "low", "high", "n", "how", "outcome"])


def pair_difference_table(frames: dict[str, pd.DataFrame], a: str, b: str) -> pd.DataFrame:
    """``pair_differences`` of each protocol's runs in points, one row per protocol and pair (for writing)."""
    parts = [pair_differences(by_family(df), a, b).assign(protocol=p) for p, df in frames.items()]
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if out.empty:
        return pd.DataFrame(columns=["protocol", *PAIR, f"{a}_minus_{b}_points", "low", "high", "n", "outcome"])
    out[f"{a}_minus_{b}_points"] = 100 * out["diff"]
    out["low"], out["high"] = 100 * out["low"], 100 * out["high"]
    out["outcome"] = out["outcome"].map({1: f"{method_label(a)} ahead", -1: f"{method_label(b)} ahead", 0: "undecided"})
    return out[["protocol", *PAIR, f"{a}_minus_{b}_points", "low", "high", "n", "outcome"]].round(
        {f"{a}_minus_{b}_points": 2, "low": 2, "high": 2})


def gap_per_seed(df: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, backbone, seed): ``full − adapter`` test accuracy (fractions): full FT's lead."""
    wide = df[df["method"].isin(["adapter", "full"])].pivot_table(index=PAIR + ["seed"], columns="method",
                                                                  values="test_acc")
    if not {"adapter", "full"} <= set(wide.columns):
        return pd.DataFrame(columns=PAIR + ["seed", "gap"])
    return (wide["full"] - wide["adapter"]).dropna().rename("gap").reset_index()


def pair_means(df: pd.DataFrame, metric: str = "test_acc") -> pd.DataFrame:
    """One row per (dataset, backbone), one column per regime: the seed-mean of ``metric``."""
    summary = seed_summary(df, PAIR + ["method"], metric)
    wide = summary.pivot(index=PAIR, columns="method", values="mean")
    wide.columns.name = None
    return wide


def compare(df: pd.DataFrame, a: str = "adapter", b: str = "full", tol: float = 0.0) -> pd.DataFrame:
    """Per pair that has both regimes: means of ``a`` and ``b``, ``diff = a − b`` (points) and the winner."""
    means = pair_means(df)
    if a not in means or b not in means:
        return pd.DataFrame(columns=PAIR + [a, b, "diff_points", "winner"])
    both = means[[a, b]].dropna().reset_index()
    both["diff_points"] = 100 * (both[a] - both[b])
    both["winner"] = np.where(both["diff_points"] > 100 * tol, a, np.where(both["diff_points"] < -100 * tol, b, "tie"))
    return both


def win_loss(df: pd.DataFrame, a: str = "adapter", b: str = "full", tol: float = 0.0) -> dict[str, int]:
    """Counts of pairs where ``a`` wins, loses and ties against ``b`` (by seed means; ``tol`` in fractions)."""
    table = compare(df, a, b, tol)
    return {"wins": int((table["winner"] == a).sum()), "losses": int((table["winner"] == b).sum()),
            "ties": int((table["winner"] == "tie").sum()), "pairs": len(table)}


def gain_table(df: pd.DataFrame, over: str = "head") -> pd.DataFrame:
    """Gain of AdapterTune over ``over`` per pair, in points, plus a mean row (the paper's +14.9 over head-only)."""
    table = compare(df, "adapter", over)
    out = table[PAIR + ["adapter", over, "diff_points"]].rename(columns={"diff_points": f"gain_over_{over}_points"})
    for col in ("adapter", over):
        out[col] = 100 * out[col]
    return out


def generalisation_gap(df: pd.DataFrame) -> pd.DataFrame:
    """Per run: ``train_eval_acc − test_acc`` in points (clean-transform training accuracy minus test); a
    ``protocol`` column is kept when there is one."""
    _require(df, PAIR + ["method", "seed", "train_eval_acc", "test_acc"])
    keep = ["protocol"] if "protocol" in df.columns else []
    out = df[keep + PAIR + ["method", "seed", "train_eval_acc", "test_acc"]].copy()
    out["gap_points"] = 100 * (out["train_eval_acc"] - out["test_acc"])
    out["regime"] = out["method"].map(method_label)
    return out


def gap_table(gaps: pd.DataFrame) -> pd.DataFrame:
    """Generalisation gap per (protocol and) regime over every run of ``generalisation_gap``: mean, sample sd, n."""
    by = (["protocol"] if "protocol" in gaps.columns else []) + ["method"]
    table = gaps.groupby(by)["gap_points"].agg(["mean", "std", "count"]).reset_index()
    table["order"] = table["method"].map({m: i for i, m in enumerate(regime_order())})
    table = table.sort_values(by[:-1] + ["order"]).drop(columns="order")
    table.insert(len(by) - 1, "regime", table.pop("method").map(method_label))
    return table.rename(columns={"mean": "gap_mean_points", "std": "gap_std_points", "count": "runs"}).reset_index(drop=True)


# -- ablations ----------------------------------------------------------------------------------------
def knob_table(df: pd.DataFrame, knob: str, extra: tuple[str, ...] = ("trainable_params",)) -> pd.DataFrame:
    """Accuracy ``mean ± std`` per value of one knob (rank, every, init, ...) with the mean of ``extra`` columns."""
    by = [knob] if isinstance(knob, str) else list(knob)
    summary = seed_summary(df, by)
    summary["test_acc"] = [pm(m, s, n) for m, s, n in zip(summary["mean"], summary["std"], summary["n"])]
    summary["mean_points"] = 100 * summary["mean"]
    summary["std_points"] = 100 * summary["std"]
    for col in extra:
        if col in df.columns:
            summary[col] = df.groupby(by, dropna=False, sort=True)[col].mean().to_numpy()
    return summary.drop(columns=["mean", "std", "min", "max"]).rename(columns={"n": "seeds"})


def rank_table(df: pd.DataFrame) -> pd.DataFrame:
    """Tab.3: test accuracy per adapter rank, with trainable parameters; one block per (dataset, backbone) when the
    rank grid spans several pairs (ranks of different pairs never share a row)."""
    adapters = df[df["method"] == "adapter"]
    several = {"dataset", "backbone"} <= set(adapters.columns) and len(adapters[PAIR].drop_duplicates()) > 1
    return knob_table(adapters, PAIR + ["rank"] if several else "rank").astype({"rank": int})


def placement_table(df: pd.DataFrame) -> pd.DataFrame:
    """Tab.4 (placement): every × start, accuracy with its cost in trainable parameters (the ``start`` lowest blocks
    also leave the backward graph). Measured speed is not a column: it changes between machines and runs, so the
    table would not reproduce; it lives in ``benchmarks/`` and in each run's result."""
    extra = ("trainable_params",)
    return knob_table(df[df["method"] == "adapter"], ["every", "start"], extra).astype({"every": int, "start": int})


def init_table(df: pd.DataFrame) -> pd.DataFrame:
    """Tab.4 (init): zero vs random init at each sigma, mean and std across seeds (zero init has no sigma)."""
    adapters = df[df["method"] == "adapter"]
    sigma = adapters["init_std"].astype(float).where(adapters["init"] == "random")
    return knob_table(adapters.assign(init_std=sigma), ("init", "init_std"))


def knob_slices(df: pd.DataFrame, defaults: dict[str, float]) -> dict[str, pd.DataFrame]:
    """Per knob (lr, weight_decay, scale): the adapter runs with every *other* knob at its default."""
    adapters = df[df["method"] == "adapter"]
    out = {}
    for knob in defaults:
        others = [k for k in defaults if k != knob]
        mask = np.logical_and.reduce([np.isclose(adapters[k].astype(float), float(defaults[k])) for k in others]) \
            if others else np.ones(len(adapters), bool)
        out[knob] = adapters[mask]
    return out


def sensitivity_table(df: pd.DataFrame, defaults: dict[str, float]) -> pd.DataFrame:
    """Tab.5: for each knob (lr, weight_decay, scale), accuracy at each value with the other knobs at default."""
    parts = []
    for knob, runs in knob_slices(df, defaults).items():
        part = knob_table(runs, knob, extra=())
        part.insert(0, "knob", knob)
        parts.append(part.rename(columns={knob: "value"}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


# -- Tab.1 --------------------------------------------------------------------------------------------
def with_full_ft_fraction(params: pd.DataFrame) -> pd.DataFrame:
    """Add ``pct_of_full_ft``: trainable / what full fine-tuning trains (backbone + head).

    Recomputed here from a table's own head/full rows (so it works on any counts frame, not only
    ``method.parameter_table``'s); this denominator, head included, reproduces the paper's 0.917% mean.
    """
    plain = params[params["method"].map(lambda m: regime(m).whole_model)]  # its total is what full FT trains
    full_ft = plain.groupby(["backbone", "num_classes"])["total"].first().rename("full_ft_params")
    out = params.merge(full_ft, left_on=["backbone", "num_classes"], right_index=True, how="left")
    out["pct_of_full_ft"] = 100 * out["trainable"] / out["full_ft_params"]
    return out


def core_pair_fractions(params: pd.DataFrame, datasets: tuple[str, ...], rank: int = AdapterConfig.rank,
                        every: int = AdapterConfig.every) -> pd.DataFrame:
    """Adapter % of full FT for every backbone of a Tab.1 frame (its ``backbone_params``) × dataset (registry classes)."""
    rows = []
    for name, part in params.groupby("backbone", sort=False):
        depth, dim = backbone_shape(name)
        bare = int(part["backbone_params"].iloc[0])
        for dataset in datasets:
            c = DATASETS[dataset].num_classes
            trainable = expected_trainable(depth, dim, c, "adapter", rank=rank, every=every)
            head = dim * c + c
            rows.append({"backbone": name, "dataset": dataset, "classes": c, "trainable": trainable,
                         "pct_of_backbone": 100 * trainable / bare, "pct_of_full_ft": 100 * trainable / (bare + head)})
    return pd.DataFrame(rows)


# -- writing ------------------------------------------------------------------------------------------
def round_measures(frame: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """Accuracies and differences (``*_acc``, ``*_points``) rounded for a table file; settings such as a learning
    rate keep every digit (``round(3)`` on the whole frame printed lr 1e-4 as 0)."""
    measures = [c for c in frame.columns if str(c).endswith(("_acc", "_points"))]
    return frame.round({c: digits for c in measures})


def tables_dir(profile: str) -> Path:
    return figures_dir() / "tables" / profile


def _float_formats(frame: pd.DataFrame) -> list[str]:
    """Per column: whole numbers without decimals, large ones with one, the rest with 4 significant digits."""
    formats = []
    for col in frame.columns:
        values = frame[col].dropna() if frame[col].dtype.kind in "fiu" else pd.Series([], dtype=float)
        whole, large = len(values) and (values == values.round()).all(), len(values) and values.abs().max() >= 1000
        formats.append(".0f" if whole else ".1f" if large else ".4g")
    return formats


def write_table(table: pd.DataFrame, name: str, profile: str, caption: str = "",
                out_dir: str | Path | None = None) -> dict[str, Path]:
    """``<name>.csv`` / ``.md`` / ``.tex`` under ``figures/tables/<profile>/``; smoke tables carry a warning line."""
    if not name or "/" in name:
        raise ValueError(f"table name {name!r} is not allowed: use a plain file stem like 'tab2_main'")
    out = Path(out_dir) if out_dir is not None else tables_dir(profile)
    out.mkdir(parents=True, exist_ok=True)
    stamp = profile_record(profile).stamp
    warn = f"{stamp}. " if stamp else ""
    keep_index = not isinstance(table.index, pd.RangeIndex)
    flat = table.reset_index() if keep_index else table  # CSV / Markdown: index levels become plain columns
    head = f"**{warn}{caption}**\n\n" if (warn or caption) else ""
    texts = {"csv": flat.to_csv(index=False),
             "md": head + flat.to_markdown(index=False, floatfmt=_float_formats(flat)) + "\n",
             "tex": table.to_latex(index=keep_index, caption=(warn + caption) or None, label=f"tab:{name}",
                                   float_format="%.4g", escape=True)}
    return {kind: atomic_write_bytes(out / f"{name}.{kind}", text.encode()) for kind, text in texts.items()}


__all__ = [
    "by_family", "family_frames", "replication_unit", "round_measures",
    "by_protocol", "gap_per_seed", "knob_slices", "main_table_by_protocol", "stack", "pair_difference_table", "pair_differences",
    "regime_order", "compare", "core_pair_fractions", "method_label",
    "gain_table", "gap_table", "generalisation_gap", "init_table", "knob_table", "main_table",
    "pair_means", "placement_table", "pm", "rank_table", "seed_summary", "sensitivity_table", "tables_dir",
    "win_loss", "with_full_ft_fraction", "write_table",
]
