"""The speed and memory targets, each judged in code against what is physically possible and against noise.

- **Adapter vs full fine-tuning**: training throughput ratio ≥ 0.95 × the FLOP ratio of the two steps (the limit:
  a frozen backbone skips every weight gradient, nothing more).
- **start = L/2**: the same rule against *its own* FLOP ratio (~2.1× on a 12-block ViT: the top half still needs
  input gradients), not a fixed 2.5×, which is above that limit.
- **Peak memory**: the plain adapter ≤ 0.6 × full fine-tuning on ViT-S/16 at batch 32. Recomputing frozen MLPs
  (all, or the lower half) is judged on the same memory target *and* on its throughput cost (≤ 10 % of the plain
  adapter's); :func:`memory_default` names the cheapest variant that meets both — the one to make the default.
- Inference overhead of the adapters ≤ 5 %; a head-only epoch from cached features ≥ 20× faster.

Each throughput ratio is the median over ≥ :data:`MIN_REPEATS` timed rounds, every round one interleaved repeat (one
step of every regime, the order rotated), so a load spike during one step cannot decide a target; the spread over
the rounds (quartiles and range) is reported beside it, and a target inside the quartiles is flagged as within noise.
Memory is one measurement in a fresh process per configuration (no spread).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

MIN_REPEATS = 5
MEMORY_TARGET, RECOMPUTE_COST_PCT = 0.6, 10.0
MEMORY_BACKBONE, MEMORY_BATCH = "vit-s16", 32


@dataclass(frozen=True)
class Target:
    """One target: the ratios-table column it reads, how it is written and how it is judged."""

    key: str
    label: str
    text: str
    ok: Callable[[float], bool]
    backbones: tuple[str, ...] | None = None  # None: every backbone
    batch: int | None = None  # only at this batch size
    # "rounds": a median over interleaved repeats, judged only with >= MIN_REPEATS of them; "fresh process": one
    # memory measurement; "medians": a ratio of two separately timed medians
    measured_as: str = "rounds"

    def applies(self, backbone: str, batch: int) -> bool:
        return (self.backbones is None or backbone in self.backbones) and (self.batch is None or batch == self.batch)


def _memory(key: str, label: str) -> Target:
    return Target(key, label, f"≤ {MEMORY_TARGET} ({MEMORY_BACKBONE} @ {MEMORY_BATCH})", lambda v: v <= MEMORY_TARGET,
                  (MEMORY_BACKBONE,), MEMORY_BATCH, measured_as="fresh process")


def _cost(key: str, label: str) -> Target:
    return Target(key, label, f"≤ {RECOMPUTE_COST_PCT:g} %", lambda v: v <= RECOMPUTE_COST_PCT)


TARGETS: tuple[Target, ...] = (
    Target("adapter_efficiency", "adapter / full train throughput ÷ its FLOP ratio", "≥ 0.95", lambda v: v >= 0.95),
    Target("adapter_startL2_efficiency", "adapter start=L/2 / full train throughput ÷ its FLOP ratio", "≥ 0.95",
           lambda v: v >= 0.95),
    _memory("adapter_mem_ratio", "plain adapter / full peak memory"),
    _memory("adapter_recompute_half_mem_ratio", "adapter, lower half of frozen MLPs recomputed / full peak memory"),
    _cost("adapter_recompute_half_cost_pct", "throughput cost of recomputing the lower half (% of plain adapter)"),
    _memory("adapter_recompute_mem_ratio", "adapter, every frozen MLP recomputed / full peak memory"),
    _cost("adapter_recompute_cost_pct", "throughput cost of recomputing every frozen MLP (% of plain adapter)"),
    Target("adapter_infer_overhead_pct", "adapter inference overhead vs bare (%)", "≤ 5 %", lambda v: v <= 5.0),
    Target("cached_epoch_speedup", "head-only epoch: through backbone / cached features", "≥ 20×", lambda v: v >= 20.0,
           measured_as="medians"),
)
TARGET_BY_KEY = {t.key: t for t in TARGETS}
# (name, memory column, cost column) from cheapest to most expensive: the first that meets both is the default.
MEMORY_VARIANTS = (("plain adapter", "adapter_mem_ratio", None),
                   ("recompute the lower half of the frozen MLPs", "adapter_recompute_half_mem_ratio",
                    "adapter_recompute_half_cost_pct"),
                   ("recompute every frozen MLP", "adapter_recompute_mem_ratio", "adapter_recompute_cost_pct"))


def _value(row: pd.Series | dict, key: str) -> float:
    value = row.get(key, math.nan)
    return float(value) if value is not None and pd.notna(value) else math.nan


def verdict(target: Target, backbone: str, batch: int, row: pd.Series | dict) -> bool | None:
    """True / False where the target applies and was measured (with enough repeats); None otherwise."""
    value = _value(row, target.key)
    if not target.applies(backbone, batch) or math.isnan(value):
        return None
    if target.measured_as == "rounds" and not _value(row, f"{target.key}_n") >= MIN_REPEATS:
        return None
    return bool(target.ok(value))


def judge(ratios: pd.DataFrame) -> pd.DataFrame:
    """One row per (target, backbone) where the target applies: median, spread, repeats, pass/fail, within noise."""
    out = []
    for target in TARGETS:
        for _, row in ratios.iterrows():
            backbone, batch = row["backbone"], int(row["batch"])
            if not target.applies(backbone, batch) or math.isnan(_value(row, target.key)):
                continue
            spread = {k: _value(row, f"{target.key}_{k}") for k in ("q25", "q75", "min", "max", "n")}
            passed = verdict(target, backbone, batch, row)
            noisy = passed is not None and not math.isnan(spread["q25"]) and \
                target.ok(spread["q25"]) != target.ok(spread["q75"])
            out.append({"target": target.label, "key": target.key, "goal": target.text, "backbone": backbone,
                        "batch": batch, "value": _value(row, target.key), **spread, "passed": passed,
                        "within_spread": noisy})
    return pd.DataFrame(out)


def memory_default(ratios: pd.DataFrame) -> str:
    """The sentence the memory target comes down to: which variant meets ≤ 0.6 at ≤ 10 % cost on ViT-S/16 @ 32."""
    rows = ratios[(ratios["backbone"] == MEMORY_BACKBONE) & (ratios["batch"] == MEMORY_BATCH)]
    if rows.empty:
        return f"The memory target was not measured ({MEMORY_BACKBONE} at batch {MEMORY_BATCH} is not in this run)."
    row = rows.iloc[0]
    parts = []
    for name, mem_key, cost_key in MEMORY_VARIANTS:
        mem = _value(row, mem_key)
        cost = 0.0 if cost_key is None else _value(row, cost_key)
        if math.isnan(mem) or math.isnan(cost):
            parts.append(f"{name}: not measured")
            continue
        cost_ok = cost_key is None or verdict(TARGET_BY_KEY[cost_key], MEMORY_BACKBONE, MEMORY_BATCH, row)
        parts.append(f"{name}: {mem:.3f} × full FT" + ("" if cost_key is None else f" at {cost:.1f} % throughput cost"))
        if mem <= MEMORY_TARGET and cost_ok:
            advice = ("the default already meets it" if cost_key is None else
                      f"make `{name}` the default for frozen blocks (outputs and gradients are bit-identical)")
            return f"Memory target (≤ {MEMORY_TARGET} × full FT, ≤ {RECOMPUTE_COST_PCT:g} % cost): met by **{name}**; " \
                   f"{advice}. " + "; ".join(parts) + "."
    return f"Memory target (≤ {MEMORY_TARGET} × full FT at ≤ {RECOMPUTE_COST_PCT:g} % cost) met by no variant: " + \
        "; ".join(parts) + "."


def _fmt(v: float) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3g}"


def _span(a: float, b: float) -> str:
    return "–" if math.isnan(a) or math.isnan(b) else f"{_fmt(a)}–{_fmt(b)}"


def markdown(judged: pd.DataFrame) -> str:
    """The targets table: measured median, quartiles and range over the repeats, pass/fail computed above."""
    lines = ["| target | goal | backbone | batch | median | quartiles | range | repeats | pass |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in judged.itertuples():
        how = TARGET_BY_KEY[r.key].measured_as
        reps = f"{int(r.n)}" if how == "rounds" and not math.isnan(r.n) else how
        mark = "n/a (too few repeats)" if r.passed is None else ("✓" if r.passed else "✗")
        if r.within_spread:
            mark += " (target within the quartiles: noise could flip it)"
        lines.append(f"| {r.target} | {r.goal} | {r.backbone} | {r.batch} | {_fmt(r.value)} | {_span(r.q25, r.q75)} | "
                     f"{_span(r.min, r.max)} | {reps} | {mark} |")
    return "\n".join(lines)


__all__ = ["MIN_REPEATS", "TARGETS", "Target", "judge", "markdown", "memory_default", "verdict"]
