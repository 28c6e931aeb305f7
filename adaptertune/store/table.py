"""The table of all runs: one flat row per ``result.json``, as a DataFrame the paper floor computes from."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..backbones import replicate_of
from ..config import RunConfig
from .runs import read_if_present, store_root

# Result-row columns besides the flattened config fields; the notebooks build tables from these names.
RESULT_COLUMNS = (
    "run_id", "status", "test_acc", "test_top5", "val_acc", "best_val_acc", "best_val_epoch", "train_acc",
    "train_loss", "train_eval_acc", "trainable_params", "total_params", "wall_s", "train_images_per_s",
    "peak_mem_mb", "backbone_tag", "backbone_source", "git_sha", "git_dirty", "device", "head_mode", "threads", "error",
    "backbone_digest", "split_digest", "family", "replicate", "cpu_model",
)


def result_row(result: dict) -> dict:
    """Flatten one result.json into a table row: config fields first, then RESULT_COLUMNS (and extras)."""
    metrics, params, backbone = result.get("metrics", {}), result.get("params", {}), result.get("backbone", {})
    row = dict(result.get("config", {}))
    row.update(
        run_id=result.get("run_id"), status=result.get("status"),
        **{k: metrics.get(k) for k in ("test_acc", "test_top5", "test_loss", "val_acc", "val_loss", "best_val_acc",
                                       "best_val_epoch", "train_acc", "train_loss", "train_eval_acc",
                                       "train_images_per_s", "epochs_done")},
        trainable_params=params.get("trainable"), total_params=params.get("total"),
        trainable_fraction=params.get("fraction"), wall_s=result.get("wall_s"), peak_mem_mb=result.get("peak_mem_mb"),
        backbone_tag=backbone.get("tag"), backbone_source=backbone.get("source"), git_sha=result.get("git_sha"),
        git_dirty=result.get("git_dirty"), device=result.get("device"), world_size=result.get("world_size"),
        head_mode=result.get("config", {}).get("head_mode"), threads=result.get("threads"), error=result.get("error"),
        backbone_digest=result.get("inputs", {}).get("backbone"), split_digest=result.get("inputs", {}).get("split"),
        cpu_model=result.get("cpu_model"),
    )
    if row.get("backbone"):
        row["family"], row["replicate"] = replicate_of(row["backbone"])
    return row


def load_results(root: str | Path | None = None, status: str | tuple[str, ...] | None = "finished") -> pd.DataFrame:
    """One row per run (default: finished runs only; ``status=None`` for all), sorted by run_id."""
    runs = store_root(root) / "runs"
    wanted = (status,) if isinstance(status, str) else status
    rows = []
    for result_file in sorted(runs.glob("*/result.json")) if runs.is_dir() else []:
        result = read_if_present(result_file)  # another process may clear a run while we list the store
        if result is not None and (wanted is None or result.get("status") in wanted):
            rows.append(result_row(result))
    columns = RunConfig.field_names() + [c for c in RESULT_COLUMNS if c not in RunConfig.field_names()]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=columns)
    extras = [c for c in frame.columns if c not in columns]
    return frame.reindex(columns=columns + extras).reset_index(drop=True)


def format_table(frame: pd.DataFrame, fmt: str = "markdown") -> str:
    """A compact human table of runs (for the CLI); ``fmt`` is ``markdown`` or ``csv`` (all columns)."""
    if fmt == "csv":
        return frame.to_csv(index=False)
    if fmt != "markdown":
        raise ValueError(f"format={fmt!r} is not allowed: choose one of ('markdown', 'csv')")
    cols = ["run_id", "dataset", "backbone", "method", "rank", "seed", "epochs", "test_acc", "best_val_acc",
            "train_eval_acc", "trainable_params", "wall_s"]
    view = frame[[c for c in cols if c in frame.columns]].copy()
    for c in ("test_acc", "best_val_acc", "train_eval_acc"):
        if c in view:
            view[c] = view[c].map(lambda v: f"{100 * v:.2f}%" if pd.notna(v) else "")
    for c in ("rank", "trainable_params"):
        if c in view:
            view[c] = view[c].map(lambda v: "" if pd.isna(v) else f"{int(v):,}" if c == "trainable_params" else str(int(v)))
    if "wall_s" in view:
        view["wall_s"] = view["wall_s"].map(lambda v: f"{v:.1f}" if pd.notna(v) else "")
    return view.to_markdown(index=False) if len(view) else "(no finished runs)"


__all__ = ["RESULT_COLUMNS", "format_table", "load_results", "result_row"]
