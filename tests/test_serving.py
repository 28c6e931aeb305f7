"""Notebook 06's functions on a real (tiny) store: two runs served from one backbone, a mixed batch equal to each
run's single-task model (exact mode bit for bit, batched mode within tolerance), forward_all and its block count;
an empty store gives empty frames."""
from __future__ import annotations

import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

from adaptertune import RunConfig, create_backbone, run
from adaptertune.paper import serving
from adaptertune.store.table import load_results
from helpers import needs_fashion_mnist


def test_an_empty_store_gives_empty_frames():
    empty = pd.DataFrame(columns=["run_id", "dataset"])
    model = serving.load_tasks(empty)
    batch = serving.mixed_batch(empty)
    assert model is None and batch.tasks == [] and len(batch.pictures) == 0
    assert serving.predictions(model, batch).empty and serving.single_task_check(model, empty, batch).empty
    assert serving.forward_all_table(model, batch).empty and serving.cost_table(model).empty
    assert serving.task_table(model).empty and serving.captions(serving.predictions(model, batch)) == []
    assert "nothing to serve" in serving.verdict(serving.single_task_check(model, empty, batch), serving.cost_table(model))


@pytest.mark.slow
@needs_fashion_mnist
def test_two_runs_served_from_one_backbone(isolated_home):
    torch.manual_seed(0)  # a "pretrained" smoke mini-s, so both runs share their frozen backbone
    weights = isolated_home / "data" / "backbones" / "smoke" / "mini-s.safetensors"
    weights.parent.mkdir(parents=True)
    backbone = create_backbone("mini-s", 1, pretrained=False)
    save_file({k: v.contiguous() for k, v in backbone.state_dict().items() if not k.startswith("head.")}, str(weights))
    for dataset in ("fmnist_target", "digits"):
        run(RunConfig(dataset=dataset, backbone="mini-s", method="adapter", start=3, profile="smoke", epochs=1,
                      warmup_epochs=0, batch_size=32, limit=64, train_eval_limit=64), verbose=False)
    runs = load_results()
    model = serving.load_tasks(runs)
    assert set(model.task_names) == {"fmnist_target", "digits"}
    tasks = serving.task_table(model).set_index("task")
    assert tasks.loc["digits", "classes"] == 10 and tasks.loc["fmnist_target", "first adapted block"] == 3
    batch = serving.mixed_batch(runs, per_task=3)
    assert batch.images.shape == (6, 1, 28, 28) and batch.tasks[:2] != [batch.tasks[0]] * 2  # interleaved
    preds = serving.predictions(model, batch)
    assert len(preds) == 6 and preds["true"].tolist() == [batch.class_names[t][y] for t, y in zip(batch.tasks, batch.labels)]
    assert set(preds.loc[preds["task"] == "digits", "predicted"]) <= set("0123456789")
    check = serving.single_task_check(model, runs, batch)
    assert check["exact_equal"].all() and check["images"].tolist() == [3, 3]
    assert check["batched_close"].all() and check["same_predictions"].all()
    assert (check["batched_max_abs_diff"] <= 1e-5).all()
    every = serving.forward_all_table(model, batch)
    assert list(every.columns[-2:]) == [f"{t} says" for t in model.task_names] and len(every) == 6
    cost = serving.cost_table(model).iloc[0]
    assert (cost["shared blocks"], cost["per-task blocks"], cost["separate blocks"]) == (4, 4, 12)
    text = serving.verdict(check, serving.cost_table(model))
    assert "**2 of 2 tasks** give exactly" in text and "batched mode **2 of 2** are within tolerance" in text and "8 block passes per image for all 2 task(s) instead of 12" in text
    assert len(serving.captions(preds)) == 6 and "→" in serving.captions(preds)[0]
