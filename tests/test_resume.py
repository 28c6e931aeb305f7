"""A run killed after an epoch checkpoint resumes and ends with exactly the metrics of an uninterrupted run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from adaptertune import RunConfig, run
from adaptertune import store
from adaptertune.training.checkpoint import CHECKPOINT_FILE, read_checkpoint_state

# the killed process computes with this process's thread count: CPU numerics depend on it (bit-identical resume is
# promised for the same count), and conftest pins ours whatever OMP_NUM_THREADS the child would inherit
RUN_SCRIPT = textwrap.dedent("""
    import json, sys, torch
    torch.set_num_threads(int(sys.argv[2]))
    from adaptertune import RunConfig, run
    run(RunConfig.from_dict(json.loads(sys.argv[1])), verbose=False)
""")
TIMING = {"seconds", "train_seconds", "images_per_s", "train_images_per_s"}


def _config(method: str) -> RunConfig:
    return RunConfig(dataset="digits", backbone="mini-s", method=method, pretrained=False, profile="smoke", epochs=4,
                     warmup_epochs=1, batch_size=64, limit=500, log_every=3, train_eval_limit=200)


def _strip(d: dict) -> dict:
    return {k: v for k, v in d.items() if k not in TIMING}


@pytest.mark.slow
@pytest.mark.parametrize("method", ["adapter", "full"])
def test_killed_run_resumes_to_identical_metrics(isolated_home, method):
    cfg = _config(method)
    reference = run(cfg, root=isolated_home / "reference", verbose=False)

    env = {**os.environ, "ADAPTERTUNE_HOME": str(isolated_home), "ADAPTERTUNE_RESULTS": str(isolated_home / "results")}
    proc = subprocess.Popen([sys.executable, "-c", RUN_SCRIPT, json.dumps(cfg.to_dict()), str(torch.get_num_threads())],
                            env=env, stderr=subprocess.PIPE)
    ckpt = store.run_path(cfg.run_id) / CHECKPOINT_FILE
    deadline, state = time.time() + 120, None
    while time.time() < deadline:
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read().decode()}"
        state = read_checkpoint_state(ckpt) if ckpt.is_file() else None
        if state and state["epoch"] >= 1:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert state is not None and 1 <= state["epoch"] < cfg.epochs
    assert store.run_status(cfg.run_id) == "running"  # interrupted, not finished

    resumed = run(cfg, verbose=False)
    assert resumed["resumed_from"] and resumed["resumed_from"][0] >= 1
    assert _strip(resumed["metrics"]) == _strip(reference["metrics"])
    metrics = [_strip(r) for r in store.load_metrics(cfg.run_id).to_dict("records")]
    assert metrics == [_strip(r) for r in store.load_metrics(cfg.run_id, isolated_home / "reference").to_dict("records")]
    assert store.load_steps(cfg.run_id).equals(store.load_steps(cfg.run_id, isolated_home / "reference"))
    import numpy as np

    a, b = store.load_predictions(cfg.run_id), store.load_predictions(cfg.run_id, isolated_home / "reference")
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_a_corrupt_checkpoint_is_a_clear_error(isolated_home):
    cfg = _config("head").with_(epochs=1)
    path = store.run_path(cfg.run_id)
    path.mkdir(parents=True)
    (path / CHECKPOINT_FILE).write_bytes(b"not a safetensors file")
    store.write_json(path / "result.json", {"status": "running"})
    with pytest.raises(ValueError, match="unreadable"):
        run(cfg, verbose=False)
    assert store.run_status(cfg.run_id) == "failed"
