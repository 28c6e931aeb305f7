"""Run store: schema of result rows, per-run loaders, atomic writes, and the CLI's run / results commands."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from adaptertune import RunConfig, load_results, run
from adaptertune import store
from adaptertune.cli import main

REQUIRED = [
    "run_id", "status", "test_acc", "test_top5", "val_acc", "best_val_acc", "best_val_epoch", "train_acc", "train_loss",
    "train_eval_acc", "trainable_params", "total_params", "wall_s", "train_images_per_s", "peak_mem_mb",
    "backbone_tag", "backbone_source", "git_sha", "git_dirty", "device", "head_mode",
]


def tiny(**changes) -> RunConfig:
    base = dict(dataset="digits", backbone="mini-s", method="adapter", pretrained=False, profile="smoke", epochs=1,
                warmup_epochs=0, batch_size=64, limit=300, train_eval_limit=100)
    return RunConfig(**{**base, **changes})


@pytest.fixture()
def finished(isolated_home):
    cfg = tiny()
    return cfg, run(cfg, verbose=False)


def test_result_row_schema(finished):
    cfg, result = finished
    frame = load_results()
    assert len(frame) == 1
    assert list(frame.columns[: len(RunConfig.field_names())]) == RunConfig.field_names()
    assert set(REQUIRED) <= set(frame.columns)
    row = frame.iloc[0]
    assert row["run_id"] == cfg.run_id and row["status"] == "finished" and row["method"] == "adapter"
    for col in ("test_acc", "test_top5", "val_acc", "best_val_acc", "train_acc", "train_eval_acc"):
        assert 0.0 <= row[col] <= 1.0, col
    assert row["trainable_params"] < row["total_params"] and row["peak_mem_mb"] > 0 and row["wall_s"] > 0
    assert row["backbone_source"] == "random" and row["head_mode"] == "augmented"
    assert row["best_val_epoch"] == 1


def test_result_json_records_provenance(finished):
    cfg, result = finished
    path = store.run_path(cfg.run_id)
    on_disk = json.loads((path / "result.json").read_text())
    assert on_disk["status"] == "finished" and on_disk["run_id"] == cfg.run_id
    assert set(on_disk["versions"]) >= {"torch", "timm", "torchvision", "adaptertune", "python"}
    assert {"git_sha", "git_dirty", "device", "wall_s", "backbone", "dataset"} <= set(on_disk)
    assert on_disk["dataset"]["num_classes"] == 10 and on_disk["backbone"]["name"] == "mini-s"
    assert json.loads((path / "config.json").read_text()) == cfg.resolved().to_dict()
    assert not [p.name for p in path.iterdir() if p.name.endswith(".tmp")]


def test_loaders_and_the_trained_model_reproduce_the_predictions(finished):
    cfg, result = finished
    preds = store.load_predictions(cfg.run_id)
    assert set(preds) == {"y_true", "y_pred", "top5"} and preds["top5"].shape == (len(preds["y_true"]), 5)
    assert np.mean(preds["y_true"] == preds["y_pred"]) == pytest.approx(result["metrics"]["test_acc"])
    assert len(store.load_metrics(cfg.run_id)) == 1 and {"step", "loss", "lr"} <= set(store.load_steps(cfg.run_id))
    from adaptertune.data import load_dataset, make_loader

    model = store.load_model(cfg.run_id)
    splits = load_dataset(cfg.dataset, profile=cfg.profile, seed=cfg.seed, data_config=__import__("adaptertune").data_config(model),
                          val_fraction=cfg.val_fraction, limit=cfg.limit)
    with torch.no_grad():
        y_pred = torch.cat([model(x).argmax(1) for x, _ in make_loader(splits.test, batch_size=128, shuffle=False)])
    assert np.array_equal(y_pred.numpy(), preds["y_pred"])


def test_full_finetuning_saves_and_reloads_the_whole_model(isolated_home):
    cfg = tiny(method="full")
    run(cfg, verbose=False)
    assert (store.run_path(cfg.run_id) / store.MODEL_FILE).is_file()
    model = store.load_model(cfg.run_id)
    assert not model.training and sum(p.numel() for p in model.parameters()) == run(cfg)["params"]["total"]


def test_missing_or_unfinished_runs_give_clear_errors(isolated_home):
    with pytest.raises(FileNotFoundError, match="no run 'nope'"):
        store.load_metrics("nope")
    assert store.run_status("nope") == "missing"
    assert load_results().empty and "test_acc" in load_results().columns


def test_atomic_write_keeps_the_old_file_when_the_rename_fails(tmp_path, monkeypatch):
    target = tmp_path / "result.json"
    store.write_json(target, {"status": "running"})

    def boom(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        store.write_json(target, {"status": "finished"})
    assert json.loads(target.read_text()) == {"status": "running"}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_cli_run_then_results_table(isolated_home, capsys):
    argv = ["run", "--dataset", "digits", "--backbone", "mini-s", "--method", "adapter", "--rank", "4", "--epochs", "1",
            "--profile", "smoke", "--no-pretrained", "--limit", "300", "--batch-size", "64", "--warmup-epochs", "0",
            "--grad-clip", "none"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    summary = json.loads(out.strip().splitlines()[-1])
    assert 0 <= summary["test_acc"] <= 1
    assert main(["results"]) == 0
    table = capsys.readouterr().out
    assert summary["run_id"] in table and "test_acc" in table
    assert main(["results", "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith("dataset,backbone,method,rank")
    assert main(["run", "--dataset", "digits", "--backbone", "mini-s", "--method", "ssf"]) == 2
    assert "choose one of" in capsys.readouterr().err


def test_a_run_cleared_by_another_process_while_listing_is_skipped(tmp_path, monkeypatch):
    import errno

    from adaptertune.store import runs as run_files

    for run_id, status in (("aaaaaaaaaaaa", "finished"), ("bbbbbbbbbbbb", "finished")):
        run_files.write_json(run_files.run_path(run_id, tmp_path) / run_files.RESULT_FILE,
                             {"run_id": run_id, "status": status, "config": {}})
    real = run_files.read_json

    def cleared(path):  # bbbb's result.json is unlinked (a --force elsewhere) between the listing and the read
        if "bbbbbbbbbbbb" in str(path):
            raise FileNotFoundError(path)
        return real(path)

    monkeypatch.setattr(run_files, "read_json", cleared)
    assert load_results(tmp_path)["run_id"].tolist() == ["aaaaaaaaaaaa"]
    assert run_files.run_status("bbbbbbbbbbbb", tmp_path) == "missing"
    monkeypatch.setattr(run_files, "read_json", lambda path: (_ for _ in ()).throw(OSError(errno.ESTALE, "stale")))
    assert run_files.read_result("aaaaaaaaaaaa", tmp_path) is None  # a stale NFS handle reads as absent
