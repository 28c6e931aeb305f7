"""The multi-task benchmark: its targets are judged from the measurements, and its quick mode runs end to end
(so the script cannot rot between `make bench` runs). No timing is asserted."""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmarks/ is a folder of the repository, not an installed package
    sys.path.insert(0, str(ROOT))

from benchmarks import multitask  # noqa: E402


def rows(mixed: float, forward_all: float, exact: bool = True, close: bool = True) -> list[dict]:
    common = {"backbone": "mini-s", "task_tensor_bytes": 100, "task_measured_bytes": 150.0, "single_model_bytes": 10_000,
              "task_tensor_growth_exact": exact, "agreement_tasks": 4, "batched_max_abs_diff": 0.0 if close else 1e-3,
              "batched_close": close}
    return [{**common, "mode": "single", "tasks": 1, "throughput_vs_single": 1.0, "time_vs_reference": 1.0},
            {**common, "mode": "mixed", "tasks": 4, "throughput_vs_single": mixed, "time_vs_reference": 1 / mixed},
            {**common, "mode": "mixed-exact", "tasks": 4, "throughput_vs_single": 0.5, "time_vs_reference": 2.0},
            {**common, "mode": "loop", "tasks": 4, "throughput_vs_single": 0.5, "time_vs_reference": 2.0},
            {**common, "mode": "forward_all", "tasks": 4, "throughput_vs_single": 2.0, "time_vs_reference": forward_all,
             "block_fraction": 0.56}]


MIXED = "mixed batch (batched mode, default) / single-task batch throughput, N=4"
EXACT = "mixed batch, exact mode (reference) / single-task batch throughput, N=4"
AGREE = "batched mode vs single-task models: largest logit difference (fp32, N=4)"


def test_targets_are_judged_from_the_measurements():
    good = multitask.summary(rows(mixed=0.95, forward_all=0.6)).set_index("metric")
    assert good.loc[MIXED, "pass"] == "✓" and good.loc[AGREE, "pass"] == "✓"
    assert good.loc["forward_all, 4 tasks at start=L/2 / 4 separate passes (time)", "pass"] == "✓"
    assert good.loc["bytes per added task: adapter + head tensors", "pass"] == "✓"
    assert good.loc["loop over N single-task models / single-task batch throughput, N=4", "pass"] == ""
    assert good.loc[EXACT, "pass"] == "" and good.loc[EXACT, "value"] == 0.5  # the exact mode: for reference only
    bad = multitask.summary(rows(mixed=0.85, forward_all=0.7, exact=False, close=False)).set_index("metric")
    assert (bad.loc[[m for m in bad.index if bad.loc[m, "target"]], "pass"] == "✗").all()
    text = multitask.markdown(bad.reset_index())
    assert f"| {MIXED} | ≥ 0.9 | 0.85 ✗ |" in text
    assert all(line.count("|") == 4 for line in text.splitlines())  # no cell breaks the table


def test_quick_mode_needs_an_output_folder():
    with pytest.raises(SystemExit):
        multitask.parse_args(["--quick"])


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_quick_benchmark_writes_csv_markdown_and_figure(tmp_path):
    paths = multitask.main(["--quick", "--out", str(tmp_path), "--no-lora"])
    assert sorted(p.name for p in paths) == ["multitask.csv", "multitask.md", "multitask.png", "multitask_targets.md"]
    assert (tmp_path / "multitask_targets.md").read_text().startswith("| metric | target | mini-s |")
    detail = pd.read_csv(tmp_path / "multitask.csv")
    assert {"single", "mixed", "mixed-exact", "loop", "forward_all", "separate"} <= set(detail["mode"])
    assert set(detail.loc[detail["mode"] == "mixed", "tasks"]) == set(detail.loc[detail["mode"] == "mixed-exact", "tasks"]) == {1, 2}
    assert detail["task_tensor_growth_exact"].all() and detail["batched_close"].all()
    text = (tmp_path / "multitask.md").read_text()
    assert "| metric | target | mini-s |" in text and "≥ 0.9" in text and "≤ 0.65" in text
