"""The run store: ``<root>/runs/<run_id>/`` holds everything one run produced, written atomically.

Files per run: ``config.json`` (the resolved RunConfig), ``result.json`` (status running / finished /
failed, final metrics, provenance), ``metrics.jsonl`` (one line per epoch), ``steps.jsonl`` (loss and lr
every ``log_every`` steps), ``checkpoint.safetensors`` (last finished epoch), ``predictions.npz`` (test
labels, top-1 and top-5 predictions) and the trained tensors (``adapters.safetensors`` for head/adapter,
``model.safetensors`` for full fine-tuning), and ``snapshots/epoch<k>.safetensors`` for the epochs a config asks
to keep (``snapshot_epochs``: the mini pretraining's dose-response backbones). Every file is written to a temporary name and renamed
into place, so a reader (or a killed writer) never sees half a file.
"""
from __future__ import annotations

import io
import errno
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..atomic import atomic_write_bytes
from ..config import RunConfig
from ..paths import results_dir
from ..regimes import regime

STATUSES = ("running", "finished", "failed")
# The run directory's layout: every writer (training.run) and reader uses these names.
CONFIG_FILE, RESULT_FILE, METRICS_FILE, STEPS_FILE = "config.json", "result.json", "metrics.jsonl", "steps.jsonl"
ADAPTER_FILE, MODEL_FILE, PREDICTIONS_FILE = "adapters.safetensors", "model.safetensors", "predictions.npz"


# -- paths and writers (atomic: adaptertune.atomic) --------------------------------------------------------------------
def store_root(root: str | Path | None = None) -> Path:
    """``root`` or ``adaptertune.paths.results_dir()`` (``$ADAPTERTUNE_RESULTS`` or ``<repo>/results``)."""
    return Path(root).expanduser().resolve() if root is not None else results_dir()


def run_path(run_id: str, root: str | Path | None = None) -> Path:
    return store_root(root) / "runs" / run_id


def snapshot_path(run_dir: Path, epoch: int) -> Path:
    """The model weights a run kept after ``epoch`` (``RunConfig.snapshot_epochs``)."""
    return run_dir / "snapshots" / f"epoch{epoch}.safetensors"


def write_json(path: Path, obj: Any) -> Path:
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n").encode())


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    """The whole file at once: readers see the old or the new list, never a torn last line."""
    text = "".join(json.dumps(r, sort_keys=True, default=_json_default) + "\n" for r in rows)
    return atomic_write_bytes(path, text.encode())


def write_predictions(path: Path, y_true: np.ndarray, y_pred: np.ndarray, top5: np.ndarray) -> Path:
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


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


# -- reading one run --------------------------------------------------------------------------------
def read_result(run_id: str, root: str | Path | None = None) -> dict | None:
    """The run's ``result.json``, or None when it has none, including one another process removed as we looked
    (a ``--force`` or retried run is cleared first)."""
    return read_if_present(run_path(run_id, root) / RESULT_FILE)


def read_if_present(path: Path) -> Any | None:
    """A JSON file, or None when it is absent or vanished between listing and reading (stale handles on a network
    file system included): writes are atomic, so a file that reads is whole."""
    try:
        return read_json(path)
    except FileNotFoundError:
        return None
    except OSError as err:
        if err.errno == errno.ESTALE:
            return None
        raise


def run_status(run_id: str, root: str | Path | None = None) -> str:
    """``missing``, ``running`` (also: interrupted), ``finished`` or ``failed``."""
    result = read_result(run_id, root)
    return "missing" if result is None else result.get("status", "running")


def existing_run(run_id: str, root: str | Path | None) -> Path:
    path = run_path(run_id, root)
    if not (path / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"no run {run_id!r} in the store {store_root(root)} (list runs with `python -m adaptertune results`)")
    return path


def load_config(run_id: str, root: str | Path | None = None) -> RunConfig:
    return RunConfig.from_dict(read_json(existing_run(run_id, root) / CONFIG_FILE))


def adapter_file_for_run(run_id: str, root: str | Path | None = None) -> Path:
    """The adapter file of a finished head/adapter run; a missing, unfinished or full fine-tuning run is an error."""
    path = existing_run(run_id, root)
    cfg, result = load_config(run_id, root), read_result(run_id, root) or {}
    if result.get("status") != "finished":
        raise ValueError(f"run {run_id!r} is {result.get('status', 'missing')!r}, not finished: it has no adapter file")
    if regime(cfg.method).whole_model:
        raise ValueError(f"run {run_id!r} trained the whole backbone (method {cfg.method!r}): it has no adapter file")
    return path / ADAPTER_FILE


def read_jsonl(path: Path) -> pd.DataFrame:
    if not path.is_file():
        return pd.DataFrame()
    return pd.DataFrame([json.loads(line) for line in path.read_text().splitlines() if line.strip()])


def load_metrics(run_id: str, root: str | Path | None = None) -> pd.DataFrame:
    """One row per finished epoch: epoch, train_loss, train_acc, val_loss, val_acc, lr, seconds, images_per_s."""
    return read_jsonl(existing_run(run_id, root) / METRICS_FILE)


def load_steps(run_id: str, root: str | Path | None = None) -> pd.DataFrame:
    """Training loss and lr every ``log_every`` steps (columns step, epoch, loss, lr); empty if not logged."""
    return read_jsonl(existing_run(run_id, root) / STEPS_FILE)


def load_predictions(run_id: str, root: str | Path | None = None) -> dict[str, np.ndarray]:
    """Test-set ``y_true``, ``y_pred`` and ``top5`` (N × min(5, C) class indices), plain arrays."""
    path = existing_run(run_id, root) / PREDICTIONS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"run {run_id!r} has no {PREDICTIONS_FILE} (status {run_status(run_id, root)!r})")
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


__all__ = [
    "ADAPTER_FILE", "CONFIG_FILE", "METRICS_FILE", "MODEL_FILE", "RESULT_FILE", "STEPS_FILE", "PREDICTIONS_FILE", "STATUSES", "adapter_file_for_run", "existing_run", "load_config",
    "load_metrics", "load_predictions", "load_steps", "read_if_present", "read_json", "read_jsonl", "read_result", "run_path", "run_status",
    "snapshot_path", "store_root",
    "write_json", "write_jsonl", "write_predictions",
]
