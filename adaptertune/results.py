"""The run store: ``<root>/runs/<run_id>/`` holds everything one run produced, written atomically.

Files per run: ``config.json`` (the resolved RunConfig), ``result.json`` (status running / finished /
failed, final metrics, provenance), ``metrics.jsonl`` (one line per epoch), ``steps.jsonl`` (loss and lr
every ``log_every`` steps), ``checkpoint.safetensors`` (last finished epoch), ``predictions.npz`` (test
labels, top-1 and top-5 predictions) and the trained tensors (``adapters.safetensors`` for head/adapter,
``model.safetensors`` for full fine-tuning). Every file is written to a temporary name and renamed
into place, so a reader (or a killed writer) never sees half a file.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .atomic import atomic_write_bytes
from .config import RunConfig
from .paths import results_dir

STATUSES = ("running", "finished", "failed")
# Result-row columns besides the flattened config fields; the notebooks build tables from these names.
RESULT_COLUMNS = (
    "run_id", "status", "test_acc", "test_top5", "val_acc", "best_val_acc", "best_val_epoch", "train_acc",
    "train_loss", "train_eval_acc", "trainable_params", "total_params", "wall_s", "train_images_per_s",
    "peak_mem_mb", "backbone_tag", "backbone_source", "git_sha", "git_dirty", "device", "head_mode",
)
ADAPTER_FILE, MODEL_FILE, PREDICTIONS_FILE = "adapters.safetensors", "model.safetensors", "predictions.npz"


# -- paths and writers (atomic: adaptertune.atomic) --------------------------------------------------------------------
def store_root(root: str | Path | None = None) -> Path:
    """``root`` or ``adaptertune.paths.results_dir()`` (``$ADAPTERTUNE_RESULTS`` or ``<repo>/results``)."""
    return Path(root).expanduser().resolve() if root is not None else results_dir()


def run_path(run_id: str, root: str | Path | None = None) -> Path:
    return store_root(root) / "runs" / run_id


def write_json(path: Path, obj: Any) -> Path:
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n").encode())


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    """The whole file at once: readers see the old or the new list, never a torn last line."""
    text = "".join(json.dumps(r, sort_keys=True, default=_json_default) + "\n" for r in rows)
    return atomic_write_bytes(path, text.encode())


def write_predictions(path: Path, y_true: np.ndarray, y_pred: np.ndarray, top5: np.ndarray) -> Path:
    import io

    buf = io.BytesIO()
    np.savez(buf, y_true=np.asarray(y_true, dtype=np.int64), y_pred=np.asarray(y_pred, dtype=np.int64),
             top5=np.asarray(top5, dtype=np.int64))
    return atomic_write_bytes(path, buf.getvalue())


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, (Path,)):
        return str(obj)
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text())


# -- reading one run --------------------------------------------------------------------------------
def read_result(run_id: str, root: str | Path | None = None) -> dict | None:
    path = run_path(run_id, root) / "result.json"
    return _read_json(path) if path.is_file() else None


def run_status(run_id: str, root: str | Path | None = None) -> str:
    """``missing``, ``running`` (also: interrupted), ``finished`` or ``failed``."""
    result = read_result(run_id, root)
    return "missing" if result is None else result.get("status", "running")


def _existing_run(run_id: str, root: str | Path | None) -> Path:
    path = run_path(run_id, root)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no run {run_id!r} in the store {store_root(root)} (list runs with `python -m adaptertune results`)")
    return path


def load_config(run_id: str, root: str | Path | None = None) -> RunConfig:
    return RunConfig.from_dict(_read_json(_existing_run(run_id, root) / "config.json"))


def _read_jsonl(path: Path) -> pd.DataFrame:
    if not path.is_file():
        return pd.DataFrame()
    return pd.DataFrame([json.loads(line) for line in path.read_text().splitlines() if line.strip()])


def load_metrics(run_id: str, root: str | Path | None = None) -> pd.DataFrame:
    """One row per finished epoch: epoch, train_loss, train_acc, val_loss, val_acc, lr, seconds, images_per_s."""
    return _read_jsonl(_existing_run(run_id, root) / "metrics.jsonl")


def load_steps(run_id: str, root: str | Path | None = None) -> pd.DataFrame:
    """Training loss and lr every ``log_every`` steps (columns step, epoch, loss, lr); empty if not logged."""
    return _read_jsonl(_existing_run(run_id, root) / "steps.jsonl")


def load_predictions(run_id: str, root: str | Path | None = None) -> dict[str, np.ndarray]:
    """Test-set ``y_true``, ``y_pred`` and ``top5`` (N × min(5, C) class indices), plain arrays."""
    path = _existing_run(run_id, root) / PREDICTIONS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"run {run_id!r} has no {PREDICTIONS_FILE} (status {run_status(run_id, root)!r})")
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def load_model(run_id: str, root: str | Path | None = None, device: str = "cpu"):
    """The trained network of a finished run: the backbone rebuilt and the trained tensors loaded, in eval mode."""
    import torch
    from safetensors.torch import load_file

    from .adapter_files import load_adapters
    from .backbones import INFO_ATTR, create_backbone
    from .regimes import prepare

    path = _existing_run(run_id, root)
    cfg, result = load_config(run_id, root), read_result(run_id, root) or {}
    if result.get("status") != "finished":
        raise ValueError(f"run {run_id!r} is {result.get('status', 'missing')!r}, not finished: it has no final weights")
    num_classes = int(result["dataset"]["num_classes"])
    if cfg.method == "full":  # every tensor is in the file: no need for (possibly remote) pretrained weights
        model = create_backbone(cfg.backbone, num_classes, pretrained=False, profile=cfg.profile)
        info = result.get("backbone")
        if info:
            setattr(model, INFO_ATTR, dict(info))
        prepare(model, "full")
        model.load_state_dict(load_file(str(path / MODEL_FILE)), strict=True)
    else:
        from .train import seeded_backbone

        with torch.random.fork_rng(devices=[]):  # the caller's RNG stream is left as it was
            model = seeded_backbone(cfg, num_classes)
        load_adapters(model, path / ADAPTER_FILE)  # refuses a backbone that differs from the trained one
    return model.to(torch.device(device)).eval()


# -- the table of all runs --------------------------------------------------------------------------
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
        head_mode=result.get("config", {}).get("head_mode"), error=result.get("error"),
    )
    return row


def load_results(root: str | Path | None = None, status: str | tuple[str, ...] | None = "finished") -> pd.DataFrame:
    """One row per run (default: finished runs only; ``status=None`` for all), sorted by run_id."""
    runs = store_root(root) / "runs"
    wanted = (status,) if isinstance(status, str) else status
    rows = []
    for result_file in sorted(runs.glob("*/result.json")) if runs.is_dir() else []:
        result = _read_json(result_file)
        if wanted is None or result.get("status") in wanted:
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


__all__ = [
    "ADAPTER_FILE", "MODEL_FILE", "PREDICTIONS_FILE", "RESULT_COLUMNS", "STATUSES",
    "format_table", "load_config", "load_metrics", "load_model", "load_predictions", "load_results", "load_steps",
    "read_result", "result_row", "run_path", "run_status", "store_root", "write_json", "write_jsonl",
    "write_predictions",
]
