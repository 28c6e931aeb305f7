"""Notebook 06: the runs of the ``multitask`` grid served together from one frozen backbone.

Pure functions of the run store: load each run's adapter file into one :class:`adaptertune.MultiTask`, draw a
mixed batch from the runs' own test splits, predict it (the default batched mode), check every image against the
run's single-task model (exact mode: ``torch.equal``; batched mode: within its tolerance, same prediction), and show
``forward_all`` with its block count. An empty or partial store gives empty frames,
never an error: the notebook says what is missing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..backbones import create_backbone, data_config
from ..data import load_for_run
from ..multitask import BATCHED_ATOL, BATCHED_RTOL, MultiTask
from ..store import runs as run_store
from ..store.models import backbone_for_run, load_model
from .analysis import display_images

PREDICTION_COLUMNS = ["image", "task", "true", "predicted", "probability", "correct"]


def task_name(dataset: str) -> str:
    """A run's task name: its dataset (the folder name for a user's ImageFolder dataset)."""
    return Path(dataset).name


def load_tasks(runs: pd.DataFrame, root: str | Path | None = None) -> MultiTask | None:
    """The runs' adapter files as one MultiTask on the first run's backbone (rebuilt as trained); None if no runs."""
    if runs.empty:
        return None
    backbone = backbone_for_run(runs["run_id"].iloc[0], root)
    return MultiTask(backbone, [(task_name(d), run_store.adapter_file_for_run(r, root))
                                for d, r in zip(runs["dataset"], runs["run_id"])])


def task_table(model: MultiTask | None) -> pd.DataFrame:
    """One row per task: classes, adapter placement and the bytes it adds to the shared backbone."""
    cols = ["task", "classes", "rank", "every", "first adapted block", "task bytes", "input"]
    if model is None:
        return pd.DataFrame(columns=cols)
    rows = []
    for name in model.task_names:
        info = model.task(name)
        size = "x".join(map(str, info.data_config["input_size"]))
        rows.append([name, info.num_classes, info.config.rank if info.config else None,
                     info.config.every if info.config else None, info.first_block, info.nbytes, size])
    return pd.DataFrame(rows, columns=cols)


@dataclass
class MixedBatch:
    """Test images of several tasks in one batch, interleaved, with each image's task, label and a picture to show."""

    images: torch.Tensor
    tasks: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    pictures: np.ndarray = field(default_factory=lambda: np.zeros((0, 1, 1)))
    class_names: dict[str, list[str]] = field(default_factory=dict)


def mixed_batch(runs: pd.DataFrame, per_task: int = 4, seed: int = 0, root: str | Path | None = None) -> MixedBatch:
    """``per_task`` seeded test images of each run's dataset (the images the run was scored on), interleaved."""
    parts = []
    for dataset, run_id in zip(runs["dataset"], runs["run_id"]):
        cfg = run_store.load_config(run_id, root)
        test = load_for_run(cfg).test
        pick = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed))[:per_task].tolist()
        dcfg = data_config(create_backbone(cfg.backbone, 1, pretrained=False, profile=cfg.profile))
        names = (run_store.read_result(run_id, root) or {})["dataset"]["class_names"]
        parts.append((task_name(dataset), [test[i][0] for i in pick], [int(test[i][1]) for i in pick],
                      display_images(test, pick, dcfg["mean"], dcfg["std"]), names))
    if not parts:
        return MixedBatch(images=torch.zeros(0))
    order = [(k, j) for j in range(per_task) for k in range(len(parts)) if j < len(parts[k][1])]
    return MixedBatch(images=torch.stack([parts[k][1][j] for k, j in order]), tasks=[parts[k][0] for k, _ in order],
                      labels=[parts[k][2][j] for k, j in order], pictures=np.stack([parts[k][3][j] for k, j in order]),
                      class_names={p[0]: p[4] for p in parts})


def predictions(model: MultiTask | None, batch: MixedBatch) -> pd.DataFrame:
    """The mixed batch through ``model(images, tasks)``: each image's top-1 class of its own task."""
    if model is None or not batch.tasks:
        return pd.DataFrame(columns=PREDICTION_COLUMNS)
    with torch.no_grad():
        logits = model(batch.images, batch.tasks)
    rows = []
    for i, (task, label, out) in enumerate(zip(batch.tasks, batch.labels, logits)):
        probs = out.softmax(0)
        k = int(probs.argmax())
        names = batch.class_names[task]
        rows.append([i, task, names[label], names[k], float(probs[k]), k == label])
    return pd.DataFrame(rows, columns=PREDICTION_COLUMNS)


def captions(table: pd.DataFrame) -> list[str]:
    return [f"{r.task}\n{r.true} → {r.predicted} ({r.probability:.0%})" for r in table.itertuples()]


def single_task_check(model: MultiTask | None, runs: pd.DataFrame, batch: MixedBatch,
                      root: str | Path | None = None) -> pd.DataFrame:
    """Per task: the mixed batch's logits on that task's images against the run's own single-task model, in both
    modes: exact (``torch.equal``) and batched (largest difference, within tolerance, same predicted classes)."""
    cols = ["task", "run_id", "images", "exact_equal", "batched_max_abs_diff", "batched_close", "same_predictions"]
    if model is None or not batch.tasks:
        return pd.DataFrame(columns=cols)
    with torch.no_grad():
        exact, batched = model(batch.images, batch.tasks, mode="exact"), model(batch.images, batch.tasks, mode="batched")
        rows = []
        for dataset, run_id in zip(runs["dataset"], runs["run_id"]):
            name = task_name(dataset)
            idx = [i for i, t in enumerate(batch.tasks) if t == name]
            single = load_model(run_id, root)(batch.images[idx])
            got = torch.stack([batched[i] for i in idx])
            rows.append([name, run_id, len(idx), torch.equal(torch.stack([exact[i] for i in idx]), single),
                         float((got - single).abs().max()),
                         torch.allclose(got, single, rtol=BATCHED_RTOL, atol=BATCHED_ATOL),
                         torch.equal(got.argmax(1), single.argmax(1))])
    return pd.DataFrame(rows, columns=cols)


def forward_all_table(model: MultiTask | None, batch: MixedBatch) -> pd.DataFrame:
    """Every task's top-1 class for every image of the batch (one shared pass): rows images, columns tasks."""
    if model is None or not batch.tasks:
        return pd.DataFrame()
    with torch.no_grad():
        logits = model.forward_all(batch.images)
    table = pd.DataFrame({"image": range(len(batch.tasks)), "task": batch.tasks,
                          "true": [batch.class_names[t][y] for t, y in zip(batch.tasks, batch.labels)]})
    for name, out in logits.items():
        names = model.task(name).class_names or [str(i) for i in range(out.shape[1])]
        table[f"{name} says"] = [names[k] for k in out.argmax(1).tolist()]
    return table


def cost_table(model: MultiTask | None) -> pd.DataFrame:
    """Transformer-block passes per image: forward_all (shared + per task) vs one single-task pass per task."""
    cols = ["tasks", "shared blocks", "per-task blocks", "forward_all blocks", "separate blocks", "fraction"]
    if model is None:
        return pd.DataFrame(columns=cols)
    cost = model.cost()
    return pd.DataFrame([[len(cost.per_task), cost.shared, sum(cost.per_task.values()), cost.total, cost.separate,
                          cost.fraction]], columns=cols)


def verdict(check: pd.DataFrame, cost: pd.DataFrame) -> str:
    """Markdown: the equality result and what forward_all saves, computed from the frames."""
    if check.empty:
        return "No task runs in the store yet: nothing to serve (the first table says what is missing)."
    exact, close = int(check["exact_equal"].sum()), int((check["batched_close"] & check["same_predictions"]).sum())
    text = (f"**{exact} of {len(check)} tasks** give exactly their single-task model's logits (`torch.equal`) on their "
            f"images of the mixed batch in exact mode; in the default batched mode **{close} of {len(check)}** are "
            f"within tolerance (rtol {BATCHED_RTOL:g}, atol {BATCHED_ATOL:g}) with the same predictions, largest "
            f"difference {check['batched_max_abs_diff'].max():.2e}.")
    c = cost.iloc[0]
    if int(c["tasks"]) < 2:
        return text
    return text + (f" `forward_all` runs {int(c['forward_all blocks'])} block passes per image for all "
                   f"{int(c['tasks'])} task(s) instead of {int(c['separate blocks'])} "
                   f"({c['fraction']:.0%}): the blocks below the adapters are computed once.")


__all__ = ["MixedBatch", "captions", "cost_table", "forward_all_table", "load_tasks", "mixed_batch", "predictions",
           "single_task_check", "task_name", "task_table", "verdict"]
