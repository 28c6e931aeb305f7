"""Measurements a notebook makes (not runs) are computed once per store and inputs, and again when an input changes."""
from __future__ import annotations

import pytest

from adaptertune.paper import analysis
from adaptertune.store.measures import cached_measure, measure_path


def test_a_measure_is_computed_once_per_key_and_stored_atomically(tmp_path):
    calls = []

    def compute() -> float:
        calls.append(1)
        return 0.1 + 0.2  # a float whose decimal form is long: JSON must give back the same bits

    key = {"weights": "mini:aaaa", "images": 10}
    first = cached_measure("probe", key, compute, root=tmp_path)
    again = cached_measure("probe", dict(key), compute, root=tmp_path)
    assert first == again == 0.1 + 0.2 and len(calls) == 1
    cached_measure("probe", {**key, "images": 20}, compute, root=tmp_path)
    assert len(calls) == 2  # another input, another measurement
    folder = measure_path("probe", key, tmp_path).parent
    assert sorted(p.suffix for p in folder.iterdir()) == [".json", ".json"]  # no temporary file left behind
    with pytest.raises(ValueError, match="identifier"):
        measure_path("../escape", key, tmp_path)


def test_a_repretrained_backbone_is_probed_again(isolated_home, monkeypatch):
    weights, calls = ["mini:aaaa"], []
    monkeypatch.setattr(analysis, "backbone_digest", lambda *a: weights[0])
    monkeypatch.setattr(analysis, "_probe_source", lambda *a: calls.append(a) or 0.5 + len(calls))
    assert analysis.linear_probe_source("mini-s", "mini") == 1.5
    assert analysis.linear_probe_source("mini-s", "mini") == 1.5 and len(calls) == 1  # read back, not measured
    weights[0] = "mini:bbbb"  # new weights under the same name
    assert analysis.linear_probe_source("mini-s", "mini") == 2.5 and len(calls) == 2
    weights[0] = "missing:mini-s"  # nothing to file a value under: measured every time
    analysis.linear_probe_source("mini-s", "mini")
    analysis.linear_probe_source("mini-s", "mini")
    assert len(calls) == 4
