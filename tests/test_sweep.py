"""Sweeps: grid expansion, skipping finished runs, restart after a kill, deterministic sharding."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from adaptertune import RunConfig, store
from adaptertune.cli import main
from adaptertune.training.sweep import expand, load_sweep, parse_shard, select_shard, shard_from_env, sweep

BASE = {"dataset": "digits", "backbone": "mini-s", "pretrained": False, "profile": "smoke", "epochs": 1,
        "warmup_epochs": 0, "batch_size": 64, "limit": 200, "train_eval_limit": 64}


def test_expand_takes_the_product_and_drops_duplicates():
    configs = expand({"base": BASE, "grid": {"method": ["head", "adapter"], "rank": [4, 8], "seed": [0, 1]}})
    # adapter: 2 ranks x 2 seeds; head: rank is irrelevant -> 2 seeds only
    assert len(configs) == 6
    assert len({c.run_id for c in configs}) == 6
    union = expand({"base": BASE, "grid": [{"method": ["head"]}, {"method": ["adapter"], "rank": [2, 4]}]})
    assert [c.method for c in union] == ["head", "adapter", "adapter"]


@pytest.mark.parametrize("spec, needle", [
    ({"base": BASE, "grd": {}}, "unknown sweep key(s) ['grd']"),
    ({"base": {**BASE, "lrate": 1}, "grid": {}}, "unknown config key(s) ['lrate']"),
    ({"base": BASE, "grid": {"method": "head"}}, "non-empty list"),
    ({"base": BASE, "grid": {"method": ["ssf"]}}, "choose one of"),
])
def test_expand_rejects_bad_sweeps(spec, needle):
    with pytest.raises(ValueError) as err:
        expand(spec)
    assert needle in str(err.value)


def test_shards_are_disjoint_deterministic_and_complete(monkeypatch):
    configs = expand({"base": {**BASE, "method": "adapter"}, "grid": {"rank": [1, 2, 4, 8, 16], "seed": [0, 1, 2]}})
    parts = [select_shard(configs, (i, 4)) for i in range(4)]
    ids = [c.run_id for part in parts for c in part]
    assert sorted(ids) == sorted(c.run_id for c in configs) and len(set(ids)) == len(ids)
    assert [c.run_id for c in select_shard(list(reversed(configs)), (1, 4))] == [c.run_id for c in parts[1]]
    assert parse_shard("2/4") == (2, 4)
    with pytest.raises(ValueError, match="0 <= i < n"):
        parse_shard("4/4")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "4")
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "1")
    assert shard_from_env() == (2, 4)
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "12")  # --array=0-15:4 runs tasks 0, 4, 8, 12: shards 0..3 of 4
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "0")
    monkeypatch.setenv("SLURM_ARRAY_TASK_STEP", "4")
    assert shard_from_env() == (3, 4)


def test_second_sweep_trains_nothing(isolated_home, monkeypatch):
    configs = expand({"base": {**BASE, "method": "adapter"}, "grid": {"rank": [2, 4]}})
    first = sweep(configs, progress=False)
    assert [s["ran"] for s in first] == [True, True] and all(s["status"] == "finished" for s in first)
    import adaptertune.training.sweep as train

    monkeypatch.setattr(train, "train_or_fetch", lambda *a, **k: pytest.fail("nothing should be trained"))
    second = sweep(configs, progress=False)
    assert [s["ran"] for s in second] == [False, False]
    assert len(store.load_results()) == 2


def test_a_failing_run_does_not_stop_the_sweep(isolated_home):
    configs = [RunConfig.from_dict({**BASE, "method": "head", "lr": 1e30}), RunConfig.from_dict({**BASE, "method": "head"})]
    summary = sweep(configs, progress=False)
    assert [s["status"] for s in summary] == ["failed", "finished"]
    assert [s["ran"] for s in sweep(configs, progress=False)] == [False, False]  # failed runs are not retried by default


SWEEP_SCRIPT = textwrap.dedent("""
    import sys
    from adaptertune.training.sweep import load_sweep, sweep
    sweep(load_sweep(sys.argv[1]), progress=True)
""")


def _write_sweep(path: Path) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({"base": {**BASE, "method": "adapter", "epochs": 2, "limit": 300},
                                    "grid": {"rank": [2, 4, 8]}}))
    return path


@pytest.mark.slow
def test_killed_sweep_restarts_without_losing_a_finished_run(isolated_home, tmp_path):
    sweep_file = _write_sweep(tmp_path / "sweep.yaml")
    configs = load_sweep(sweep_file)
    env = {**os.environ, "ADAPTERTUNE_HOME": str(isolated_home), "ADAPTERTUNE_RESULTS": str(isolated_home / "results")}
    proc = subprocess.Popen([sys.executable, "-c", SWEEP_SCRIPT, str(sweep_file)], env=env, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and sum(store.run_status(c.run_id) == "finished" for c in configs) < 1:
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = {c.run_id: store.read_result(c.run_id)["finished_at"] for c in configs
                   if store.run_status(c.run_id) == "finished"}
    assert 1 <= len(done_before) < len(configs)
    summary = sweep(configs, progress=False)
    assert all(s["status"] == "finished" for s in summary)
    assert {s["run_id"] for s in summary if not s["ran"]} == set(done_before)
    for run_id, finished_at in done_before.items():
        assert store.read_result(run_id)["finished_at"] == finished_at


def test_cli_sweep_dry_run_and_shard(isolated_home, tmp_path, capsys):
    sweep_file = _write_sweep(tmp_path / "sweep.yaml")
    assert main(["sweep", str(sweep_file), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "3 of 3 run(s)" in out and out.count("missing") == 3
    parts = []
    for i in (0, 1):  # shards split by a hash of the run id: disjoint, together every run
        assert main(["sweep", str(sweep_file), "--dry-run", "--shard", f"{i}/2"]) == 0
        out = capsys.readouterr().out
        assert f"{out.count('missing')} of 3 run(s) in this shard" in out
        parts.append({line.split()[0] for line in out.splitlines() if "missing" in line})
    assert not parts[0] & parts[1] and len(parts[0] | parts[1]) == 3
    assert main(["sweep", str(sweep_file), "--shard", "1/2"]) == 0
    assert set(store.load_results()["run_id"]) == parts[1]


def test_a_sweep_under_a_multi_process_launcher_is_refused(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")  # ranks deciding apart which runs to skip would deadlock
    with pytest.raises(ValueError, match="WORLD_SIZE=2.*one sweep process per GPU"):
        sweep([RunConfig(**BASE, method="head")], progress=False)
