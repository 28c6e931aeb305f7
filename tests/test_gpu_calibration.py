"""The plan takes its GPU rates from a `make gpu-check` folder where one was measured, and says so."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from adaptertune.config import RunConfig
from adaptertune.paper import plan
from adaptertune.paper.gpu_calibration import MEASURED_GPU_FOLDER, load_calibration
from adaptertune.paths import checkout_root

PAPER = ("vit_small_patch16_224", "vit_base_patch16_224", "deit_tiny_patch16_224")


def _folder(tmp_path, train_img_s: float = 1000.0):
    """A gpu-check folder in the files' real layout: one backbone, fp32 only, a loader table."""
    (tmp_path / "bench_fp32").mkdir(parents=True)
    (tmp_path / "environment.json").write_text(json.dumps({"gpu": "Test GPU", "date": "2026-12-04T10:00:00",
                                                           "cpu": "Test CPU"}))
    pd.DataFrame([{"backbone": "vit-s16", "regime": "full", "train_img_s": train_img_s, "infer_img_s": None},
                  {"backbone": "vit-s16", "regime": "adapter", "train_img_s": 2 * train_img_s, "infer_img_s": 5000.0},
                  {"backbone": "vit-s16", "regime": "bare", "train_img_s": None, "infer_img_s": 7000.0}]
                 ).to_csv(tmp_path / "bench_fp32" / "bench.csv", index=False)
    (tmp_path / "loader").mkdir()
    pd.DataFrame([{"format": "jpeg", "workers": 1, "images_per_s": 300, "images_per_s_per_process": 300},
                  {"format": "jpeg", "workers": 4, "images_per_s": 800, "images_per_s_per_process": 200},
                  {"format": "jpeg-256", "workers": 4, "images_per_s": 1200, "images_per_s_per_process": 300},
                  {"format": "memory-device", "workers": 0, "images_per_s": 30000, "images_per_s_per_process": 30000}]
                 ).to_csv(tmp_path / "loader" / "loader.csv", index=False)
    return tmp_path


def test_a_folder_gives_rates_by_timm_name_and_decode_at_the_most_workers(tmp_path):
    cal = load_calibration(_folder(tmp_path))
    assert cal.train_rate("vit_small_patch16_224", "full", "fp32") == 1000.0
    assert cal.train_rate("vit_small_patch16_224", "full", "bf16") is None  # not measured: not invented
    assert cal.eval_rate("vit_small_patch16_224", "adapter", "fp32") == 5000.0
    assert cal.eval_rate("vit_small_patch16_224", "full", "fp32") == 7000.0  # a fine-tuned model runs as the bare one
    assert cal.decode_per_core == {"jpeg": 200.0, "jpeg_cached": 300.0} and cal.decode_workers == 4
    assert cal.device_augment == 30000.0
    assert load_calibration(tmp_path / "nothing") is None


def test_the_estimate_uses_a_measured_cell_and_the_prior_elsewhere(tmp_path):
    slow, fast = (load_calibration(_folder(tmp_path / name, rate)) for name, rate in (("a", 500.0), ("b", 1000.0)))
    cfg = RunConfig(dataset="cifar10", backbone="vit_small_patch16_224", method="full", profile="paper",
                    precision="fp32", epochs=2, warmup_epochs=1)
    setup = plan.SETUP_S["paper"]
    train = cfg.epochs * 50000 * (1 - cfg.val_fraction)
    t_slow, t_fast = (plan.estimate_seconds(cfg, calibration=c) - setup for c in (slow, fast))
    assert t_slow - t_fast == pytest.approx(train / 500 - train / 1000)  # training time follows the measured rate
    other = cfg.with_(backbone="vit_base_patch16_224")  # no cell measured for it: the prior, same with either
    assert plan.estimate_seconds(other, calibration=slow) == plan.estimate_seconds(other, calibration=fast) == \
        plan.estimate_seconds(other, calibration=None)
    jpeg = plan.data_rate("food101", plan.CURRENT, slow)
    assert jpeg == 300.0 * plan.CURRENT.workers  # the cached JPEG's measured rate per worker
    assert plan.data_rate("cifar10", plan.CURRENT, slow) == 30000.0
    assert plan.data_rate("cifar10", plan.CURRENT, slow, train=False) == plan.DECODE_PER_CORE["memory"] * \
        plan.CURRENT.workers  # evaluation is decoded by PIL: no device crops


@pytest.mark.skipif(checkout_root() is None, reason="the measured folder ships with the repository")
def test_the_committed_gpu_measurement_covers_every_paper_backbone_and_regime(isolated_home):
    cal = load_calibration()
    assert cal is not None and cal.source == str(MEASURED_GPU_FOLDER)
    for backbone in PAPER:
        for method in ("head", "full", "adapter"):
            for precision in ("fp32", "bf16"):
                assert cal.train_rate(backbone, method, precision) > 0, (backbone, method, precision)
                assert cal.eval_rate(backbone, method, precision) > 0
    assert set(cal.decode_per_core) == set(plan.DECODE_PER_CORE) and cal.device_augment > 0
    report = plan.plan_report("paper", plan.plan_frame("paper"), cal)
    assert cal.gpu in report and str(MEASURED_GPU_FOLDER) in report
