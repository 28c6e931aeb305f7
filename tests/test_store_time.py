"""The README's training time comes from the store (per CPU model), and make mini trains in one shard per core."""
from __future__ import annotations

import pandas as pd

from adaptertune.paper import store_time, suite
from adaptertune.store.provenance import cpu_model, environment
from adaptertune.store.table import result_row


def test_every_result_names_its_cpu_and_the_table_carries_it():
    assert cpu_model() and environment()["cpu_model"] == cpu_model()
    assert result_row({"config": {}, "cpu_model": "Some CPU"})["cpu_model"] == "Some CPU"


def test_store_time_sums_per_cpu_and_thread_count():
    runs = pd.DataFrame({"cpu_model": ["AMD EPYC", "AMD EPYC", "Intel Xeon", None], "threads": [1, 1, 1, 2],
                         "wall_s": [1800.0, 5400.0, 360.0, 10.0]})
    table = store_time.store_time(runs).set_index(["cpu", "threads"])
    assert table.loc[("AMD EPYC", 1), "runs"] == 2 and table.loc[("AMD EPYC", 1), "hours (sum over runs)"] == 2.0
    assert table.loc[("Intel Xeon", 1), "median s/run"] == 360.0
    assert ("not recorded", 2) in table.index  # a run without a CPU model is counted, never dropped
    assert "No finished" in store_time.describe(store_time.store_time(runs.iloc[:0]), "mini")


def test_mini_trains_in_one_shard_per_core_and_again_until_nothing_is_missing(monkeypatch):
    assert suite.shard_count("mini", cores=2) == 2 and suite.shard_count("mini", cores=1) == 1
    assert suite.shard_count("paper", cores=8) == 1  # no pinned threads: one process (GPU shards are launched by hand)
    started, rounds = [], iter([("a",), ()])

    class Done:
        def __init__(self, cmd):
            started.append(cmd)

        def wait(self):
            return 0

    class Grid:
        def __init__(self):
            self.missing, self.pending = next(rounds), 0

    monkeypatch.setattr(suite.subprocess, "Popen", Done)
    monkeypatch.setattr(suite, "ensure_backbones", lambda *a, **k: {})
    monkeypatch.setattr(suite.experiments, "load_grid", lambda *a, **k: Grid())
    assert suite.train_sharded("mini", 2, names=("main", "rank"), say=lambda m: None) == 0
    assert len(started) == 4  # two rounds of two shards: the first left a run to train
    assert [c[c.index("--shard") + 1] for c in started] == ["0/2", "1/2", "0/2", "1/2"]
    assert all(c.count("--grid") == 2 and c[c.index("--profile") + 1] == "mini" for c in started)
