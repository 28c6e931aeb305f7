"""Backbones as replicates: the backbones table from provenance files, and the variance components of a cell."""
from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from adaptertune.backbones import mini_weights_path
from adaptertune.paper import replicates


def _provenance(name: str, val: float, seed: int, epoch: int) -> None:
    path = mini_weights_path(name, "mini")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"weights")  # only its presence matters here
    path.with_suffix(".json").write_text(json.dumps({"name": name, "source_val_acc": val, "epochs": 10, "epoch": epoch,
                                                     "recipe": {"seed": seed}}))


def test_backbones_table_reads_every_provenance_file(isolated_home):
    _provenance("mini-s", 0.82, 0, 10)
    _provenance("mini-s.p1", 0.81, 1, 10)
    _provenance("mini-s.e2", 0.70, 0, 2)
    _provenance("mini-b", 0.80, 0, 10)
    (mini_weights_path("mini-b.p2", "mini").with_suffix(".json")).write_text("{}")  # no weights beside it: left out
    table = replicates.backbones_table("mini", probes={"mini-s": 0.78})
    assert list(table["backbone"]) == ["mini-b", "mini-s.e2", "mini-s", "mini-s.p1"]
    row = table.set_index("backbone").loc["mini-s.p1"]
    assert (row["family"], row["replicate"], row["pretraining_seed"], row["width"]) == ("mini-s", 1, 1, 64)
    assert row["source_val_acc"] == pytest.approx(81.0) and math.isnan(row["linear_probe_source_acc"])
    assert table.set_index("backbone").loc["mini-s", "linear_probe_source_acc"] == pytest.approx(78.0)
    assert table.set_index("backbone").loc["mini-s.e2", "snapshot_epoch"] == 2
    small, wide = table.set_index("backbone").loc[["mini-s", "mini-b"], "params"]
    assert 0 < small < wide


def test_variance_components_split_pretraining_from_seed_spread():
    rows = []
    for seed, acc in enumerate((0.80, 0.90, 0.70)):  # seed s on replicate s: the main comparison
        rows.append({"dataset": "d", "family": "mini-s", "replicate": seed, "seed": seed, "method": "adapter",
                     "test_acc": acc})
    for seed, acc in ((1, 0.81), (2, 0.79)):  # the seeds grid: more training seeds on replicate 0
        rows.append({"dataset": "d", "family": "mini-s", "replicate": 0, "seed": seed, "method": "adapter",
                     "test_acc": acc})
    table = replicates.variance_components(pd.DataFrame(rows))
    row = table.iloc[0]
    assert (row["n_backbones"], row["n_seeds"], row["regime"]) == (3, 3, "AdapterTune")
    assert row["sd_over_backbones"] == pytest.approx(10.0) and row["sd_over_seeds"] == pytest.approx(1.0)
    assert row["sd_pretraining"] == pytest.approx(math.sqrt(99.0))
    with pytest.raises(ValueError, match="family"):
        replicates.variance_components(pd.DataFrame(rows).drop(columns="family"))


def test_probes_fill_the_backbones_table():
    table = pd.DataFrame({"backbone": ["mini-s", "mini-b"], "linear_probe_source_acc": [float("nan")] * 2})
    assert replicates.probe_points(table) == [("mini-s", True), ("mini-b", True)]
    filled = replicates.with_probes(table, {("mini-s", True): 0.75, ("mini-s", False): 0.3})
    probe = filled["linear_probe_source_acc"]
    assert probe.iloc[0] == pytest.approx(75.0) and math.isnan(probe.iloc[1])
