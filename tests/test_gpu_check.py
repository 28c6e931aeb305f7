"""``make gpu-check``: the determinism comparison catches a difference and ignores timings, parts from separate calls
add up in the summary, and (slow) the CI-size form runs every part on CPU so the script cannot rot."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmarks/ is a folder of the repository, not an installed package
    sys.path.insert(0, str(ROOT))

from benchmarks import gpu_check  # noqa: E402


def fake_run(root: Path, weight: float, seconds: float, loss: float = 0.5) -> Path:
    run = root / "runs" / "abc123def456"
    run.mkdir(parents=True)
    metrics = {"test_acc": 0.5, "test_loss": loss, "train_images_per_s": 1000 / seconds}
    (run / "result.json").write_text(json.dumps({"metrics": metrics, "device": "cpu"}))
    (run / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "train_loss": loss, "seconds": seconds}) + "\n")
    (run / "steps.jsonl").write_text(json.dumps({"step": 1, "loss": loss}) + "\n")
    save_file({"blocks.0.adapter.up.weight": torch.full((2, 2), weight)}, str(run / "adapters.safetensors"))
    np.savez(run / "predictions.npz", y_true=np.arange(3), y_pred=np.arange(3), top5=np.zeros((3, 3), dtype=np.int64))
    return run


def test_compare_runs_ignores_timings_and_catches_any_difference(tmp_path):
    fake_run(tmp_path / "a", 1.0, seconds=2.0)
    fake_run(tmp_path / "b", 1.0, seconds=3.0)  # only the wall-clock differs
    same = gpu_check.compare_runs(tmp_path / "a", tmp_path / "b")
    assert same["identical_metrics"] and same["identical_tensors"] and same["identical_predictions"]
    assert same["same_run_id"] and same["max_abs_tensor_diff"] == 0.0
    fake_run(tmp_path / "c", 1.25, seconds=2.0, loss=0.5000001)
    diff = gpu_check.compare_runs(tmp_path / "a", tmp_path / "c")
    assert not diff["identical_metrics"] and not diff["identical_tensors"]
    assert diff["max_abs_tensor_diff"] == 0.25
    assert diff["differing_metrics"] == "test_loss,metrics.jsonl,steps.jsonl"


def test_summary_accumulates_parts_from_separate_calls(tmp_path):
    env = {"date": "d", "device": "cpu"}
    gpu_check.record(tmp_path, env, [{"part": "bench fp32", "ok": True, "wall_s": 1.0, "detail": ""}])
    gpu_check.record(tmp_path, env, [{"part": "suite mini", "ok": False, "wall_s": 2.0, "detail": "boom"}])
    gpu_check.record(tmp_path, env, [{"part": "bench fp32", "ok": True, "wall_s": 3.0, "detail": ""}])  # a re-run
    assert gpu_check.main(["--summarize", str(tmp_path)]) == 0
    parts = pd.read_csv(tmp_path / "summary.csv")
    assert parts["part"].tolist() == ["bench fp32", "suite mini"] and parts["wall_s"].tolist() == [3.0, 2.0]
    text = (tmp_path / "summary.md").read_text()
    assert "**suite mini failed:**" in text and "boom" in text


def test_device_label_is_a_folder_name():
    label = gpu_check.device_label(torch.device("cpu"))
    assert label.startswith("cpu-") and all(c.isalnum() or c == "-" for c in label)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_gpu_check_runs_on_cpu_in_ci_size(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--quick",
                           "--parts", "all", "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    (out,) = tmp_path.iterdir()
    assert out.name == gpu_check.device_label(torch.device("cpu"))
    parts = pd.read_csv(out / "summary.csv").set_index("part")
    assert parts["ok"].all() and {"bench fp32", "bench bf16-compile", "determinism adapter", "loader", "paper run",
                                   "suite smoke"} <= set(parts.index)
    determinism = pd.read_csv(out / "determinism.csv").iloc[0]
    assert determinism["identical_metrics"] and determinism["identical_tensors"] and determinism["same_run_id"]
    suite = pd.read_csv(out / "mini_suite.csv").iloc[0]
    assert suite["returncode"] == 0 and suite["finished"] == suite["runs"] > 0
    assert pd.read_csv(out / "mini_runs.csv")["peak_mem_mb"].notna().all()
    for variant in gpu_check.QUICK_VARIANTS:
        assert (out / f"bench_{variant}" / "targets.csv").is_file()
    summary = (out / "summary.md").read_text()
    for heading in ("## Parts", "## Training throughput", "## Peak memory per regime", "## Determinism", "## The mini suite"):
        assert heading in summary
