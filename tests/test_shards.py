"""Shards that cannot collide: hash-assigned shards, one exclusive lock per run, a killed holder's lock recovered,
and several shard processes killed at random moments still finishing every run exactly once, identically."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from adaptertune import RunConfig, store
from adaptertune.store.lock import RunLocked, history, holder, run_lock
from adaptertune.training.run import cpu_refusal
from adaptertune.training.sweep import expand, select_shard, shard_of, sweep, with_settings

BASE = {"dataset": "digits", "backbone": "mini-s", "pretrained": False, "profile": "smoke", "epochs": 2,
        "warmup_epochs": 0, "batch_size": 64, "limit": 192, "train_eval_limit": 64, "method": "adapter"}
TIMING = {"seconds", "train_seconds", "images_per_s", "train_images_per_s"}
HOLD_SCRIPT = textwrap.dedent("""
    import sys, time
    from adaptertune.store.lock import run_lock
    with run_lock(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(600)
""")


def _configs(n_seeds: int) -> list[RunConfig]:
    return expand({"base": BASE, "grid": {"rank": [2, 4], "seed": list(range(n_seeds))}})


def test_a_run_keeps_its_shard_when_the_list_grows():
    small, big = _configs(2), _configs(4)
    for n in (2, 3, 4):
        for i in range(n):
            before = {c.run_id for c in select_shard(small, (i, n))}
            after = {c.run_id for c in select_shard(big, (i, n))}
            assert before <= after, "a run moved to another shard when the grid grew"
        assert all(shard_of(c.run_id, n) == shard_of(c.run_id, n) < n for c in big)


def test_per_process_settings_leave_the_run_id_alone():
    configs = _configs(1)
    placed = with_settings(configs, device="cuda:3", num_workers=8, compile=True, eval_batch_size=None)
    assert [c.run_id for c in placed] == [c.run_id for c in configs]
    assert {(c.device, c.num_workers, c.compile) for c in placed} == {("cuda:3", 8, True)}
    with pytest.raises(ValueError, match="precision"):
        with_settings(configs, precision="bf16")


def test_a_locked_run_is_refused_and_a_killed_holders_lock_is_recovered(tmp_path):
    run_dir = tmp_path / "runs" / "abc"
    proc = subprocess.Popen([sys.executable, "-c", HOLD_SCRIPT, str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(RunLocked, match=f"pid {proc.pid}"):
            with run_lock(run_dir):
                pass
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert f"pid {proc.pid}" in holder(run_dir)  # the file stays, the lock does not
    with run_lock(run_dir):  # the kernel released the dead holder's lock
        assert f"pid {os.getpid()}" in holder(run_dir)


def test_a_run_locked_by_another_process_is_skipped_and_untouched(isolated_home):
    cfg = _configs(1)[0]
    run_dir = store.run_path(cfg.run_id)
    proc = subprocess.Popen([sys.executable, "-c", HOLD_SCRIPT, str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        summary = sweep([cfg], progress=False)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert summary[0]["status"] == "locked" and not summary[0]["ran"]
    assert sorted(p.name for p in run_dir.iterdir()) == [".lock"]  # nothing written into the locked run


def test_the_paper_profile_refuses_a_cpu_it_did_not_ask_for():
    cfg = RunConfig(dataset="pets", backbone="deit_tiny_patch16_224", method="head", profile="paper")
    message = cpu_refusal(cfg, torch.device("cpu"))
    assert message and "--device cpu" in message and "sees no CUDA device" in message
    assert cpu_refusal(cfg.with_(device="cpu"), torch.device("cpu")) is None
    assert cpu_refusal(cfg, torch.device("cuda", 0)) is None
    assert cpu_refusal(cfg.with_(profile="mini"), torch.device("cpu")) is None
    assert cfg.with_(device="cpu").run_id == cfg.run_id


def _shard_env(home: Path) -> dict[str, str]:
    return {**os.environ, "ADAPTERTUNE_HOME": str(home), "ADAPTERTUNE_RESULTS": str(home / "results"),
            "OMP_NUM_THREADS": "1"}


def _start(sweep_file: Path, shard: str | None, env: dict[str, str], steal: bool = False) -> subprocess.Popen:
    args = [sys.executable, "-m", "adaptertune", "sweep", str(sweep_file), "--threads", "1"]
    args += (["--shard", shard] + (["--steal"] if steal else [])) if shard else []
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def _stored(cfg: RunConfig, root: Path) -> tuple[dict, list[dict], dict]:
    result = store.read_result(cfg.run_id, root)
    metrics = {k: v for k, v in result["metrics"].items() if k not in TIMING}
    epochs = [{k: v for k, v in r.items() if k not in TIMING}
              for r in store.load_metrics(cfg.run_id, root).to_dict("records")]
    return metrics, epochs, {k: v.tolist() for k, v in store.load_predictions(cfg.run_id, root).items()}


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("shards,steal", [(2, False), (4, False), (2, True)])
def test_shards_killed_at_random_moments_finish_every_run_once_as_one_process_would(isolated_home, shards, steal):
    configs = _configs(2)  # 4 small runs
    sweep_file = isolated_home / "sweep.yaml"
    sweep_file.write_text(json.dumps({"base": BASE, "grid": {"rank": [2, 4], "seed": [0, 1]}}))  # JSON is YAML
    env, rng = _shard_env(isolated_home), random.Random(shards)
    reference = isolated_home / "reference"  # one uninterrupted process
    assert _start(sweep_file, None, {**env, "ADAPTERTUNE_RESULTS": str(reference)}).wait(timeout=600) == 0
    # every shard, plus one process without --shard that walks every run: only the locks keep it off the others' runs
    names = [f"{i}/{shards}" for i in range(shards)] + [None]
    for _ in range(2):  # two rounds killed at random moments, then one to the end
        procs = [_start(sweep_file, name, env, steal) for name in names]
        time.sleep(rng.uniform(3.0, 12.0))
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    procs = [_start(sweep_file, name, env, steal) for name in names]
    assert all(proc.wait(timeout=600) == 0 for proc in procs)

    root = isolated_home / "results"
    for cfg in configs:
        assert store.run_status(cfg.run_id, root) == "finished"
        events = history(store.run_path(cfg.run_id, root))
        assert events.count("finish") == 1, events  # trained to the end exactly once
        resumed = store.read_result(cfg.run_id, root)["resumed_from"]
        assert _stored(cfg, root) == _stored(cfg, reference), f"resumed after epochs {resumed}"
        assert not (store.run_path(cfg.run_id, root) / "checkpoint.safetensors").exists()
        assert np.isfinite(store.read_result(cfg.run_id, root)["metrics"]["test_acc"])


@pytest.mark.slow
def test_a_stealing_shard_takes_the_other_shards_free_runs_after_its_own(isolated_home):
    configs = _configs(2)
    own = [c.run_id for c in select_shard(configs, (0, 2))]
    alone = sweep(configs, shard=(0, 2), progress=False)
    assert [x["run_id"] for x in alone if x["ran"]] == own  # without --steal: its own part only
    stolen = sweep(configs, shard=(0, 2), progress=False, steal=True)
    others = sorted((c.run_id for c in configs if c.run_id not in own), reverse=True)  # from the far end
    assert [x["run_id"] for x in stolen if x["ran"]] == others
    assert all(store.run_status(c.run_id) == "finished" for c in configs)
