"""Controls on hand-made runs: intervals over seeds, and findings that say only what the numbers say."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from adaptertune.backbones import mini_weights_path
from adaptertune.paper import controls
from frames import MAIN, _runs


def test_tuning_gains_and_gap_change():
    tuned = MAIN.assign(test_acc=MAIN["test_acc"] + (MAIN["method"] == "adapter") * 0.05, lr=3e-3)
    gains = controls.tuning_gains(MAIN, tuned)
    adapter = gains[gains["regime"] == "AdapterTune"]
    assert adapter["diff_points"].round(6).eq(5.0).all() and (gains[gains["regime"] == "Full FT"]["diff_points"] == 0).all()
    finding = controls.gap_change(MAIN, tuned)
    assert "b/s +32.00 → +27.00" in finding.answer


def test_scratch_and_budget_tables():
    scratch = _runs({("a", "s", "full"): [0.40, 0.41, 0.42]}, pretrained=False)
    table = controls.scratch_table(MAIN, scratch)
    full = table[table["comparison"].str.startswith("Full FT")].iloc[0]
    assert full["diff_points"] == pytest.approx(29.0) and full["n"] == 3
    assert "a/s +29.00 [" in controls.scratch_finding(table).answer
    budget = _runs({("a", "s", "adapter"): [0.79, 0.81, 0.83]}, rank=3)
    btable = controls.budget_table(MAIN, budget)
    assert set(btable["comparison"]) == {"r=3 − r=16", "r=3 − Full FT"}
    assert "a/s (r=3) -1.00 [" in controls.budget_finding(btable).answer


def test_pretraining_seed_table():
    other = _runs({("a", "s.p1", "adapter"): [0.85]})
    table = controls.pretraining_seed_table(MAIN, other, {"s.p1": "s"})
    assert table["moved_points"].item() == pytest.approx(5.0) and table["seed_sd_points"].item() == pytest.approx(2.0)
    assert "by 5.00 points on average" in controls.pretraining_seed_finding(table).answer


def test_dose_response_slope(isolated_home):
    for name, val in (("mini-s.e2", 0.70), ("mini-s", 0.80)):
        path = mini_weights_path(name, "mini").with_suffix(".json")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"source_val_acc": val, "source_classes": list("abcde")}))
    rows = []
    for backbone, lead in (("mini-s.e2", 0.20), ("mini-s", 0.10)):
        for seed, jitter in enumerate((-0.01, 0.0, 0.01)):
            rows += [{"dataset": "digits", "backbone": backbone, "pretrained": True, "method": "adapter", "seed": seed,
                      "test_acc": 0.6 + jitter},
                     {"dataset": "digits", "backbone": backbone, "pretrained": True, "method": "full", "seed": seed,
                      "test_acc": 0.6 + lead + jitter}]
    runs = pd.DataFrame(rows)
    table = controls.dose_table(runs, "mini")
    assert table.set_index("backbone")["full_lead_points"].round(6).to_dict() == {"mini-s": 10.0, "mini-s.e2": 20.0}
    slopes = controls.dose_slope(runs, "mini")
    assert slopes["slope"].item() == pytest.approx(-1.0)  # -10 points of lead per +10 points of source accuracy
    assert "digits: -10.00 [" in controls.dose_finding(slopes, table).answer
    assert controls.source_accuracy("mini-s", "mini", pretrained=False) == pytest.approx(0.2)
