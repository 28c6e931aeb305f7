"""Turning benchmark rows into the ratio table, the targets table, CSV/Markdown files and one seaborn figure.

Ratios, not absolute numbers, are the claim: absolute images/s depend on the machine and its load, the ratios
between regimes timed round-robin in one process much less. Each ratio is the median over timed rounds of the
per-round ratio (paired samples taken seconds apart), which cancels load that drifts over minutes; its quartiles
and range over the rounds travel with it, and ``targets.py`` judges the targets from them.
"""
from __future__ import annotations

import datetime as dt
import importlib.metadata
import math
import os
import platform
from pathlib import Path

import pandas as pd
import torch

from adaptertune.store.provenance import cpu_model
from benchmarks import targets
from benchmarks.measure import RatioStats

LABELS = {
    "batch": "batch size",
    "full_img_s": "full FT train img/s",
    "adapter_img_s": "adapter train img/s",
    "adapter_speedup": "adapter / full train throughput",
    "adapter_flop_ratio": "full / adapter FLOPs per step",
    "adapter_efficiency": "adapter / full throughput ÷ FLOP ratio",
    "adapter_every2_speedup": "adapter every=2 / full throughput",
    "adapter_startL2_speedup": "adapter start=L/2 / full throughput",
    "adapter_startL2_flop_ratio": "full / adapter start=L/2 FLOPs",
    "adapter_startL2_efficiency": "start=L/2 / full throughput ÷ its FLOP ratio",
    "adapter_start3L4_speedup": "adapter start=3L/4 / full throughput",
    "adapter_start3L4_flop_ratio": "full / adapter start=3L/4 FLOPs",
    "head_speedup": "head-only / full throughput",
    "adapter_mem_ratio": "adapter / full peak memory",
    "adapter_startL2_mem_ratio": "adapter start=L/2 / full peak memory",
    "adapter_recompute_half_mem_ratio": "adapter + lower half of frozen MLPs recomputed / full peak memory",
    "adapter_recompute_half_cost_pct": "its throughput cost (% of plain adapter)",
    "adapter_recompute_mem_ratio": "adapter + every frozen MLP recomputed / full peak memory",
    "adapter_recompute_cost_pct": "its throughput cost (% of plain adapter)",
    "adapter_recompute_speedup": "adapter + every frozen MLP recomputed / full throughput",
    "adapter_infer_overhead_pct": "adapter inference overhead vs bare (%)",
    "adapter_infer_flop_overhead_pct": "adapter inference FLOP overhead (%)",
    "adapter_opt_state_ratio": "adapter / full optimizer-state bytes",
    "lora_trainable": "LoRA trainable params (incl. head)",
    "adapter_trainable": "adapter trainable params (incl. head)",
    "lora_vs_adapter_train": "LoRA / adapter train throughput",
    "lora_vs_adapter_mem": "LoRA / adapter peak memory",
    "lora_infer_overhead_pct": "LoRA (unmerged) inference overhead (%)",
    "cached_epoch_speedup": "head-only epoch: through backbone / cached features",
    "cached_epoch_speedup_amortised50": "same, extraction amortised over 50 epochs",
}


def _version(pkg: str) -> str:
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine_info(device: torch.device, args) -> dict:
    return {
        "date": dt.datetime.now().isoformat(timespec="seconds"), "cpu": cpu_model(), "logical_cores": os.cpu_count(),
        "torch": torch.__version__, "timm": _version("timm"), "peft": _version("peft"), "python": platform.python_version(),
        "threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "precision": args.precision, "optimizer": f"AdamW ({args.optimizer})",
        "compile": getattr(args, "compile_backend", "inductor") if args.compile else False,
        "steps": args.steps, "warmup": args.warmup, "load_avg_at_start": round(os.getloadavg()[0], 2),
        "quick": bool(getattr(args, "quick", False)),
    }


def _get(df: pd.DataFrame, regime: str, col: str) -> float:
    sel = df.loc[df["regime"] == regime, col] if col in df else pd.Series(dtype=float)
    return float(sel.iloc[0]) if len(sel) and pd.notna(sel.iloc[0]) else math.nan


def _stats(df: pd.DataFrame, regime: str, prefix: str) -> RatioStats:
    """The per-round statistics bench.py stored for ``regime`` under ``prefix`` (NaN where not measured)."""
    g = {k: _get(df, regime, f"{prefix}{k}") for k in ("", "_q25", "_q75", "_min", "_max", "_n")}
    return RatioStats(g[""], g["_q25"], g["_q75"], g["_min"], g["_max"], g["_n"])


# ratios-table prefix -> regime, for every adapter placement compared with full fine-tuning
SPEEDUPS = (("adapter", "adapter"), ("adapter_every2", "adapter-every2"), ("adapter_startL2", "adapter-startL/2"),
            ("adapter_start3L4", "adapter-start3L/4"), ("head", "head"), ("adapter_recompute", "adapter-recompute"),
            ("adapter_recompute_half", "adapter-recompute-half"))
EFFICIENCY = ("adapter", "adapter_startL2")  # judged against their own FLOP ratio (targets.py)
RECOMPUTE = (("adapter_recompute", "adapter-recompute"), ("adapter_recompute_half", "adapter-recompute-half"))


def ratios(rows: list[dict]) -> pd.DataFrame:
    """One row per backbone with the ratios the README claims, each timed ratio with its spread over the rounds
    (``<key>_q25``, ``_q75``, ``_min``, ``_max``, ``_n``); NaN where a regime was not run."""
    out = []
    detail = pd.DataFrame(rows)
    for name, df in detail.groupby("backbone", sort=False):
        g = lambda r, c: _get(df, r, c)  # noqa: E731
        full_ips, full_flops, full_mem = g("full", "train_img_s"), g("full", "train_flops"), g("full", "peak_mb")
        row = {"backbone": name, "batch": int(df["batch"].iloc[0]), "full_img_s": full_ips,
               "adapter_img_s": g("adapter", "train_img_s")}
        for key, regime in SPEEDUPS:
            speed = _stats(df, regime, "speedup_vs_full")
            flops = full_flops / g(regime, "train_flops")
            row.update(speed.to_dict(f"{key}_speedup"))
            row[f"{key}_flop_ratio"] = flops
            if key in EFFICIENCY:
                row.update(speed.map(lambda v, f=flops: v / f).to_dict(f"{key}_efficiency"))
        for key, regime in RECOMPUTE:
            row[f"{key}_mem_ratio"] = g(regime, "peak_mb") / full_mem
            row.update(_stats(df, regime, "speed_vs_adapter").map(lambda v: 100 * (1 - v)).to_dict(f"{key}_cost_pct"))
        row["adapter_mem_ratio"] = g("adapter", "peak_mb") / full_mem
        row["adapter_startL2_mem_ratio"] = g("adapter-startL/2", "peak_mb") / full_mem
        row.update(_stats(df, "adapter", "infer_overhead_pct").to_dict("adapter_infer_overhead_pct"))
        row["adapter_infer_flop_overhead_pct"] = 100 * (g("adapter", "infer_flops") / g("bare", "infer_flops") - 1)
        row["adapter_opt_state_ratio"] = g("adapter", "optimizer_state_bytes") / g("full", "optimizer_state_bytes")
        row["lora_trainable"] = g("lora", "trainable_params")
        row["adapter_trainable"] = g("adapter", "trainable_params")
        row["lora_vs_adapter_train"] = g("lora", "speedup_vs_full") / g("adapter", "speedup_vs_full")
        row["lora_vs_adapter_mem"] = g("lora", "peak_mb") / g("adapter", "peak_mb")
        row["lora_infer_overhead_pct"] = g("lora", "infer_overhead_pct")
        head_step, cached_step, extract = g("head", "train_step_s"), g("head", "cached_head_step_s"), g("head", "cached_extract_s")
        row["cached_epoch_speedup"] = head_step / cached_step
        row["cached_epoch_speedup_amortised50"] = head_step / (cached_step + extract / 50)
        out.append(row)
    return pd.DataFrame(out)


def _fmt(v) -> str:
    if isinstance(v, str):
        return v
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, (int,)) or (isinstance(v, float) and v.is_integer() and abs(v) >= 100):
        return f"{int(v):,}"
    return f"{v:.3g}" if abs(v) < 100 else f"{v:,.0f}"


def target_status(key: str, backbone: str, batch: int, row: pd.Series) -> str:
    """`` ✓`` / `` ✗`` where a target applies to this cell (targets.py judges it), else nothing."""
    if key not in targets.TARGET_BY_KEY:
        return ""
    passed = targets.verdict(targets.TARGET_BY_KEY[key], backbone, batch, row)
    return "" if passed is None else (" ✓" if passed else " ✗")


def markdown_ratios(r: pd.DataFrame) -> str:
    """Metrics as rows, backbones as columns, with the target and ✓/✗ where a target applies."""
    names = list(r["backbone"])
    lines = ["| metric | target | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for key, label in LABELS.items():
        if key not in r:
            continue
        target = targets.TARGET_BY_KEY[key].text if key in targets.TARGET_BY_KEY else ""
        cells = [_fmt(row[key]) + target_status(key, row["backbone"], int(row["batch"]), row) for _, row in r.iterrows()]
        lines.append(f"| {label} | {target} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


DETAIL_COLS = {
    "regime": "regime", "start": "start", "rank": "r", "trainable_params": "trainable", "optimizer_state_bytes":
    "AdamW state (B)", "train_flops": "GFLOPs/step", "train_img_s": "train img/s", "infer_img_s": "infer img/s",
    "peak_mb": "peak MB", "saved_mb": "saved act. MB", "first_differentiated_block": "1st diff. block",
}


def markdown_detail(rows: list[dict]) -> str:
    df = pd.DataFrame(rows)
    parts = []
    for name, g in df.groupby("backbone", sort=False):
        g = g.copy()
        if "train_flops" in g:
            g["train_flops"] = g["train_flops"] / 1e9
        cols = [c for c in DETAIL_COLS if c in g]
        lines = [f"**{name}** (batch {int(g['batch'].iloc[0])})", "",
                 "| " + " | ".join(DETAIL_COLS[c] for c in cols) + " |", "|" + "---|" * len(cols)]
        for _, row in g.iterrows():
            lines.append("| " + " | ".join(_fmt(row[c]) if c != "regime" else row[c] for c in cols) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


REGIME_ORDER = ["head", "adapter", "adapter-recompute", "adapter-recompute-half", "adapter-every2", "adapter-startL/2", "adapter-start3L/4", "lora"]


def draw(rows: list[dict], path: Path) -> Path:
    """Three panels relative to full fine-tuning / the bare model; FLOP ratios as black ticks; one colour per regime."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    df = pd.DataFrame(rows)
    full = df[df["regime"] == "full"].set_index("backbone")
    backbones = list(dict.fromkeys(df["backbone"]))
    order = [r for r in REGIME_ORDER if r in set(df["regime"])]
    colours = dict(zip(REGIME_ORDER, sns.color_palette("tab10", len(REGIME_ORDER))))
    sns.set_theme(style="whitegrid", context="notebook")
    fig, axes = plt.subplots(1, 3, figsize=(17, 5))

    def bars(ax, data: pd.DataFrame, value: str) -> None:
        regs = [r for r in order if r in set(data["regime"])]
        sns.barplot(data, x="backbone", y=value, hue="regime", hue_order=regs, order=backbones,
                    palette=colours, ax=ax, legend=False)

    if "train_img_s" in df:
        train = df[df["train_img_s"].notna() & df["regime"].isin(order)].copy()
        train["speedup"] = train["speedup_vs_full"]
        train["flop_ratio"] = train["backbone"].map(full["train_flops"]) / train["train_flops"]
        bars(axes[0], train, "speedup")
        regs = [r for r in order if r in set(train["regime"])]
        width = 0.8 / len(regs)
        for i, reg in enumerate(regs):
            for _, row in train[train["regime"] == reg].iterrows():
                xc = backbones.index(row["backbone"]) - 0.4 + (i + 0.5) * width
                axes[0].hlines(row["flop_ratio"], xc - width / 2, xc + width / 2, color="black", lw=2, zorder=5)
        axes[0].axhline(1, color="grey", lw=1)
        axes[0].set(ylabel="training images/s ÷ full fine-tuning", xlabel="",
                    title="Training throughput vs full FT (black: FLOP ratio)")
    if "peak_mb" in df:
        mem = df[df["peak_mb"].notna() & df["regime"].isin(order)].copy()
        mem["mem_ratio"] = mem["peak_mb"] / mem["backbone"].map(full["peak_mb"])
        bars(axes[1], mem, "mem_ratio")
        axes[1].axhline(0.6, color="red", ls="--", lw=1)
        axes[1].set(ylabel="peak training memory ÷ full fine-tuning", xlabel="", title="Peak memory (red: 0.6 target)")
    if "infer_overhead_pct" in df:
        inf = df[df["infer_overhead_pct"].notna() & df["regime"].isin(order)].copy()
        inf["overhead"] = inf["infer_overhead_pct"]
        bars(axes[2], inf, "overhead")
        axes[2].axhline(5, color="red", ls="--", lw=1)
        axes[2].set(ylabel="% slower than the bare backbone", xlabel="", title="Inference overhead (red: 5 % target)")
    handles = [Patch(color=colours[r], label=r) for r in order] + [Line2D([], [], color="black", lw=2, label="FLOP ratio")]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


QUICK_STAMP = "**QUICK — CI-size plumbing check (tiny shapes, few rounds): not a measurement.**"


def machine_line(machine: dict) -> str:
    """The report's one line naming the machine and settings the numbers were taken on."""
    return "Machine: " + ", ".join(f"{k}={v}" for k, v in machine.items())


def write_detail(rows: list[dict], machine: dict, path: Path) -> Path:
    """Every measurement as one CSV row, each carrying the machine's fields (``machine_<key>``)."""
    detail = pd.DataFrame(rows)
    for k, v in machine.items():
        detail[f"machine_{k}"] = v
    detail.to_csv(path, index=False)
    return path


def write_all(rows: list[dict], machine: dict, out: Path, plot: bool = False) -> list[Path]:
    """``bench.csv`` (one row per backbone × regime), ``ratios.csv``, ``targets.csv``, ``bench.md`` and, at the end,
    ``bench.png``."""
    out.mkdir(parents=True, exist_ok=True)
    write_detail(rows, machine, out / "bench.csv")
    r = ratios(rows)
    r.to_csv(out / "ratios.csv", index=False)
    judged = targets.judge(r)
    judged.to_csv(out / "targets.csv", index=False)
    md = ["# AdapterTune benchmark", "", *([QUICK_STAMP, ""] if machine.get("quick") else []),
          machine_line(machine), "",
          "## Targets", "", targets.markdown(judged), "", targets.memory_default(r), "",
          f"Timed targets are judged on the median of ≥ {targets.MIN_REPEATS} interleaved repeats (timed rounds: one "
          "step of every regime each, order rotated); quartiles and range are over those rounds. Memory: one fresh "
          "process per configuration.", "",
          "## Ratios", "", markdown_ratios(r), "", "## Per regime", "", markdown_detail(rows), ""]
    (out / "bench.md").write_text("\n".join(md))
    # the README includes this file verbatim (adaptertune.paper.readme): the targets and the memory sentence
    (out / "targets.md").write_text(targets.markdown(judged) + "\n\n" + targets.memory_default(r) + "\n")
    paths = [out / "bench.csv", out / "ratios.csv", out / "targets.csv", out / "bench.md", out / "targets.md"]
    if plot:
        paths.append(draw(rows, out / "bench.png"))
    return paths
