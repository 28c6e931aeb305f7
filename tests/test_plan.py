"""The cost model of the paper profile: its parts, its scenarios and the file README and docs include."""
from __future__ import annotations

import pytest

from adaptertune.paper import plan


def test_the_plan_reports_each_part_on_one_and_eight_gpus(isolated_home):
    table = plan.plan_frame("paper")
    report = plan.plan_report("paper", table)
    for part in ("main tables", "ablations", "controls", "whole paper"):
        assert f"| {part}" in report
    before, originals, now = (f"est_s_{k}" for k in range(len(plan.SCENARIOS)))
    assert table[originals].sum() < table[before].sum() and table[now].sum() <= table[originals].sum()
    assert (table["est_s"] == table[now]).all()  # the suite's estimate is the code as it stands
    one, eight = plan.gpu_hours(table, now, 1), plan.gpu_hours(table, now, 8)
    assert one / 8 <= eight < one  # the busiest of 8 hash shards: at least an even split
    assert plan.write_plan("paper", table).read_text() == report


def test_decode_cost_caps_a_fast_model_on_jpeg_sets_only():
    originals, now = plan.SCENARIOS[1], plan.CURRENT
    assert plan.data_rate("food101", originals) < plan.data_rate("food101", now) < plan.data_rate("cifar10", now)
    assert plan.data_rate("cifar10", now) == plan.DEVICE_AUGMENT_RATE  # the in-memory sets are cropped on the device
    assert set(plan.DATA_FORMAT) == {n for n, s in plan.DATASETS.items() if s.kind == "paper"}
    assert plan.data_rate("digits", now) == float("inf")


def test_replayed_validation_is_decoded_once_in_the_model():
    from dataclasses import replace

    from adaptertune.config import RunConfig

    cfg = RunConfig(dataset="cifar10", backbone="deit_tiny_patch16_224", method="head", profile="paper")
    streamed = replace(plan.CURRENT, val_replay=False)
    measured = plan.load_calibration()
    replayed = plan.estimate_seconds(cfg, calibration=measured)
    every_epoch = plan.estimate_seconds(cfg, scenario=streamed, calibration=measured)
    _, model_eval = plan._model_rates(cfg, cfg.resolved().precision, measured)
    decode = plan.data_rate("cifar10", plan.CURRENT, measured, train=False)
    val = plan.DATASETS["cifar10"].train_size * cfg.resolved().val_fraction
    # the only difference: 49 of the 50 validation passes at the model's rate instead of the PIL path's (the slower
    # here: a small model)
    assert every_epoch - replayed == pytest.approx((cfg.resolved().epochs - 1) * val
                                                     * (1 / decode - 1 / model_eval))
    assert decode < model_eval and not plan.SCENARIOS[0].val_replay
