"""Thread sizing: each process takes its share of the cores, by a rule the user can see and override."""
from __future__ import annotations

import pytest
import torch

from adaptertune.training import threads


@pytest.fixture()
def clean_env(monkeypatch):
    for name in (*threads.ENV_VARS, "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_rule_order(clean_env):
    assert threads.decide_threads(3, shards=4, cores=8) == (3, "requested")
    assert threads.decide_threads(None, shards=4, cores=8) == (2, "4 processes share 8 cores")
    assert threads.decide_threads(None, shards=4, cores=2)[0] == 1  # never below one
    assert threads.decide_threads(None, shards=1, cores=8)[0] is None  # torch's default
    clean_env.setenv("LOCAL_WORLD_SIZE", "2")
    assert threads.decide_threads(None, cores=8) == (4, "2 processes share 8 cores")
    clean_env.setenv("OMP_NUM_THREADS", "5")
    assert threads.decide_threads(None, shards=4, cores=8) == (5, "$OMP_NUM_THREADS")
    clean_env.setenv("SLURM_CPUS_PER_TASK", "6")  # the task's share, split between the processes sharing it
    assert threads.decide_threads(None, shards=3, cores=8) == (2, "$SLURM_CPUS_PER_TASK / 3 processes")
    clean_env.delenv("LOCAL_WORLD_SIZE")
    assert threads.decide_threads(None, shards=1, cores=8) == (6, "$SLURM_CPUS_PER_TASK")
    assert threads.decide_threads(None, shards=12, cores=8)[0] == 1  # never below one


def test_cores_are_the_ones_this_process_may_use(clean_env):
    import os

    if hasattr(os, "sched_getaffinity"):
        assert threads.available_cores() == len(os.sched_getaffinity(0))
    assert threads.decide_threads(None, shards=threads.available_cores())[0] == 1


def test_bad_values_are_named(clean_env):
    with pytest.raises(ValueError, match="threads=0 is not allowed"):
        threads.decide_threads(0)
    clean_env.setenv("SLURM_CPUS_PER_TASK", "many")
    with pytest.raises(ValueError, match="SLURM_CPUS_PER_TASK='many'"):
        threads.decide_threads(None)


def test_apply_sets_the_pool_and_a_run_records_it(clean_env, isolated_home):
    from adaptertune import RunConfig, run

    before = torch.get_num_threads()
    try:
        assert threads.apply_threads(1) == (1, "requested") and torch.get_num_threads() == 1
        cfg = RunConfig(dataset="digits", backbone="mini-s", method="head", pretrained=False, profile="smoke",
                        epochs=1, warmup_epochs=0, batch_size=64, limit=100, train_eval_limit=50)
        assert run(cfg, verbose=False)["threads"] == 1
    finally:
        torch.set_num_threads(before)


def test_cli_sweep_shard_takes_its_share(clean_env, isolated_home, capsys, monkeypatch):
    from adaptertune.cli import main

    sweep_file = isolated_home / "sweep.yaml"
    sweep_file.write_text("base: {dataset: digits, backbone: mini-s, method: head, pretrained: false, profile: smoke, "
                          "epochs: 1, warmup_epochs: 0, batch_size: 64, limit: 100, train_eval_limit: 50}\n"
                          "grid: {seed: [0, 1]}\n")
    monkeypatch.setattr(threads, "available_cores", lambda: 4)
    before = torch.get_num_threads()
    try:
        assert main(["sweep", str(sweep_file), "--shard", "0/2"]) == 0
        assert "[threads] 2 (2 processes share 4 cores)" in capsys.readouterr().err
    finally:
        torch.set_num_threads(before)
