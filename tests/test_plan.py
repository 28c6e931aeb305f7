"""The cost model of the paper profile: its parts, its scenarios and the file README and docs include."""
from __future__ import annotations

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
