"""Controls on hand-made runs: intervals over seeds, and findings that say only what the numbers say."""
from __future__ import annotations

import json

import numpy as np
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


def test_pretraining_seed_direction_of_full_fts_lead():
    other = _runs({("a", "s.p1", "adapter"): [0.75, 0.76], ("a", "s.p1", "full"): [0.71, 0.69]})
    table = controls.pretraining_seed_table(MAIN, other, {"s.p1": "s"})
    leads = controls.pretraining_seed_leads(table)
    # seed 0: adapter −5, full +1 -> lead +6; seed 1: adapter −6, full −1 -> lead +5
    assert leads["lead_moved"].round(6).tolist() == [6.0, 5.0]
    answer = controls.pretraining_seed_finding(table).answer
    assert "grew on 2, shrank on 0 of 2" in answer and "a/s.p1 +6.00" in answer


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
    assert "mini-s.e2 70.0% → +20.00" in controls.dose_finding(slopes, table).answer  # the lead at every point
    # a random-init point: without a measured source accuracy it stays in the table but leaves the slope
    random = runs[runs["backbone"] == "mini-s"].assign(pretrained=False,
                                                       test_acc=lambda d: d["test_acc"] + 0.3 * (d["method"] == "full"))
    with_random = pd.concat([runs, random], ignore_index=True)
    assert controls.dose_slope(with_random, "mini")["slope"].item() == pytest.approx(-1.0)
    assert controls.dose_table(with_random, "mini")["source_val_acc"].isna().sum() == 1
    # measured by a linear probe, every point uses the probe and the random point joins the slope
    probes = {("mini-s", True): 0.80, ("mini-s.e2", True): 0.70, ("mini-s", False): 0.40}
    assert set(controls.dose_points(with_random)) == set(probes)
    probed = controls.dose_slope(with_random, "mini", probes)
    assert probed["dose_points"].item() == 3
    assert probed["slope"].item() == pytest.approx(np.polyfit([70, 80, 40], [20, 10, 40], 1)[0])
    assert set(controls.dose_table(with_random, "mini", probes)["source_measure"]) == {"linear probe"}


def test_longer_schedule_reports_each_claims_verdict_at_both_budgets():
    noise = [0.0, 0.01, -0.005]

    def frame(adapter: float, full: float, epochs: int) -> pd.DataFrame:
        spec = {(d, b, m): [acc + x for x in noise] for d in ("t", "u") for b in ("mini-s", "mini-b")
                for m, acc in (("adapter", adapter), ("full", full), ("head", 0.5))}
        return _runs(spec, epochs=epochs)

    tuned = pd.concat([frame(0.85, 0.80, 5), _runs({("other", "mini-s", "adapter"): [0.9, 0.9, 0.9]}, epochs=5)])
    table = controls.longer_verdicts(tuned, frame(0.80, 0.86, 15), ("mini-s", "mini-b"))
    beats = table[table["claim"] == "beats_full"].set_index("epochs")["verdict"]
    assert beats.to_dict() == {"1x": "agrees", "3x": "disagrees"}  # the adapter's win does not survive 3x epochs
    assert "ahead on 4/4 pairs" in table.iloc[0]["measured"]  # only the longer schedule's pairs, not "other"
    finding = controls.longer_finding(table)
    assert "beats_full: agrees at 1x, disagrees at 3x (changes verdict)" in finding.answer
    assert controls.longer_finding(table[table["epochs"] == "1x"]) is None  # nothing to compare without the 3x runs


def test_claim_5_is_decided_again_with_the_small_widths_snapshot_of_matched_quality():
    noise = [0.0, 0.01, -0.005]

    def frame(backbone: str, adapter: float, full: float) -> pd.DataFrame:
        return _runs({(d, backbone, m): [acc + x + 0.001 * i for x in noise] for i, d in enumerate(("t", "u", "v"))
                      for m, acc in (("adapter", adapter), ("full", full))})

    base = pd.concat([frame("mini-s", 0.80, 0.90), frame("mini-b", 0.80, 0.82)])  # final mini-s: lead 10 vs 2
    tuned, seeds = base[base["seed"] == 0], base[base["seed"] > 0]
    tuned = pd.concat([tuned, frame("mini-s.p1", 0.5, 0.5).query("seed == 1")])  # other replicates stay out
    table = controls.matched_verdicts(tuned, seeds, frame("mini-s.e7", 0.80, 0.82), "mini-b", "mini")
    assert list(table["comparison"]) == ["final backbones", "matched source accuracy"]
    assert list(table["verdict"]) == ["agrees", "inconclusive"]  # the lead's width effect vanishes at matched quality
    assert table["source_acc_small"].iloc[1] == pytest.approx(100 * controls.source_accuracy("mini-s.e7", "mini"))
    assert "mini-s.e7" in controls.matched_finding(table).answer
    assert controls.matched_verdicts(tuned, seeds, tuned.iloc[:0], None, "smoke").empty
