"""Beyond the paper: AdapterTune against the other parameter-efficient regimes (LoRA, BitFit) at matched budget.

The paper names LoRA and BitFit as alternatives but reports no numbers for them; here they run through the same loop,
store and tuned protocol (each regime's learning rate chosen on validation from its own grid), so the comparison is
paired by seed on every (dataset, backbone) pair. The claims stay the paper's: this table is its own, clearly marked
section of the README (``beyond_peft.md``), written by notebook 03 from the store.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..atomic import atomic_write_bytes
from ..regimes import methods, regime
from .tables import PAIR, method_label, pair_differences, tables_dir, write_table

BASE = "adapter"  # the paper's method, against every registered regime beyond the paper
FILE = "beyond_peft"
COLUMNS = ["comparison", *PAIR, "diff_points", "low", "high", "n", "outcome", "trainable_base", "trainable_other"]


def comparison_table(tuned: pd.DataFrame, base: str = BASE) -> pd.DataFrame:
    """Per beyond-the-paper regime and pair: ``base − regime`` test accuracy in points with its paired 95% t-interval
    over seeds, the outcome, and both regimes' trainable parameter counts (from the store)."""
    rows = []
    for other in methods(in_paper=False):
        table = pair_differences(tuned, base, other)
        for r in table.itertuples(index=False):
            part = tuned[(tuned["dataset"] == r.dataset) & (tuned["backbone"] == r.backbone)]
            counts = part.groupby("method")["trainable_params"].median()
            rows.append({"comparison": f"{method_label(base)} − {method_label(other)}", "dataset": r.dataset,
                         "backbone": r.backbone, "diff_points": round(100 * r.diff, 2), "low": round(100 * r.low, 2),
                         "high": round(100 * r.high, 2), "n": int(r.n),
                         "outcome": {1: f"{method_label(base)} ahead", -1: f"{method_label(other)} ahead"}.get(
                             r.outcome, "undecided"),
                         "trainable_base": counts.get(base), "trainable_other": counts.get(other)})
    return pd.DataFrame(rows, columns=COLUMNS)


def summary(table: pd.DataFrame) -> str:
    """One line per comparison: ahead / behind / undecided over the pairs and the mean difference."""
    if table.empty:
        others = ", ".join(regime(m).label for m in methods(in_paper=False))
        return f"No runs of {others} under the tuned protocol are in the store yet (`make mini` trains them)."
    lines = []
    for name, part in table.groupby("comparison", sort=False):
        ahead = int(part["outcome"].str.startswith(method_label(BASE)).sum())
        behind = int((~part["outcome"].isin(["undecided"]) & ~part["outcome"].str.startswith(method_label(BASE))).sum())
        lines.append(f"- {name}: AdapterTune ahead on {ahead}/{len(part)} pairs, behind on {behind}, undecided on "
                     f"{len(part) - ahead - behind}; mean difference {part['diff_points'].mean():+.2f} points "
                     f"(paired 95% t-intervals over seeds, n={int(part['n'].min())}–{int(part['n'].max())}).")
    return "\n".join(lines)


def write(tuned: pd.DataFrame, profile: str, out_dir: str | Path | None = None) -> Path:
    """``beyond_peft.{csv,md,tex}`` (the table) and ``beyond_peft_summary.md`` (summary + table), which the README
    includes; returns the summary's path."""
    table = comparison_table(tuned)
    caption = ("Beyond the paper — AdapterTune vs LoRA and BitFit at matched budget (tuned protocol): test accuracy "
               "difference in points, paired 95% t-interval over seeds")
    written = write_table(table, FILE, profile, caption=caption, out_dir=out_dir)
    text = summary(table) + ("" if table.empty else "\n\n" + written["md"].read_text())
    return atomic_write_bytes((Path(out_dir) if out_dir else tables_dir(profile)) / f"{FILE}_summary.md", text.encode())


__all__ = ["BASE", "COLUMNS", "FILE", "comparison_table", "summary", "write"]
