"""The rank advisor: the pure rule from spectra, its cost against the rank sweep, the judged table (elbow, loss, hit
rate, grid edge), and one end-to-end probe on a small folder."""
from __future__ import annotations

import fixtures_data as fx
import numpy as np
import pandas as pd
import pytest

from adaptertune.paper import advice_table, advisor
from adaptertune.paper.protocols import protocol

RANKS = (1, 2, 4, 8, 16, 32, 64)


def _spectrum(decay: float, d: int = 64, seed: int = 0, shared: np.ndarray | None = None):
    s = np.arange(1, d + 1, dtype=float) ** -decay
    q = shared if shared is not None else np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))[0].T
    return s, q


def test_a_fast_decaying_shift_gets_a_small_rank_and_shared_directions_every2():
    q = np.linalg.qr(np.random.default_rng(0).normal(size=(64, 64)))[0].T
    rank, every2, overlap, curve = advisor.advice_from([_spectrum(3.0, shared=q)] * 4, RANKS, 0.90, 0.60, 1000)
    assert rank <= 4 and every2 and overlap == pytest.approx(1.0)
    assert [c["rank"] for c in curve] == list(RANKS) and curve[-1]["predicted"] == pytest.approx(0.90)
    assert all(c["low"] <= c["predicted"] <= c["high"] for c in curve)
    slow = advisor.advice_from([_spectrum(0.6, seed=i) for i in range(4)], RANKS, 0.90, 0.60, 1000)
    assert slow[0] > rank and not slow[1]  # a flat spectrum needs a larger rank; unrelated blocks keep every=1


def test_no_gain_over_the_head_advises_the_smallest_rank():
    rank, *_ = advisor.advice_from([_spectrum(0.3)], RANKS, 0.600, 0.601, 1000)
    assert rank == 1


@pytest.mark.parametrize("profile", ["mini", "paper"])
def test_the_probe_costs_at_most_15_percent_of_the_rank_sweep(profile):
    for dataset in protocol(profile).datasets:
        runs, share = advisor.probe_cost(profile, dataset)
        assert share <= advisor.MAX_COST_SHARE and runs < len(protocol(profile).ranks)


def _advice(dataset: str, rank: int) -> advisor.Advice:
    return advisor.Advice(dataset, "mini-s", "mini", rank, False, 0.1, [], 0.9, 0.6, 300, [], 0.8, 0.038)


def _sweep(dataset: str, curve: dict[int, float], noise=(0.0, 0.002, -0.002)) -> pd.DataFrame:
    return pd.DataFrame([{"dataset": dataset, "backbone": "mini-s", "method": "adapter", "rank": r, "seed": s,
                          "test_acc": acc + noise[s] + 0.001 * (r % 3) * (s - 1)}
                         for r, acc in curve.items() for s in range(3)])


def test_the_judged_table_finds_the_elbow_the_loss_and_the_hit_rate():
    plateau = {1: .70, 2: .75, 4: .80, 8: .85, 16: .853, 32: .855, 64: .852}
    rising = {r: .6 + .04 * i for i, r in enumerate(RANKS)}  # best at the grid's edge
    rows = pd.concat([_sweep("a", plateau), _sweep("b", plateau), _sweep("c", rising)])
    table = advice_table.judged_table([_advice("a", 8), _advice("b", 1), _advice("c", 64), _advice("d", 8),
                                       _advice("a", 3)], rows)
    a, b, c, d, unswept = (table.iloc[i] for i in range(5))
    assert a.measured_elbow == 8 and a.best_rank == 32 and a.verdict == "hit" and abs(a.loss_points) < 1
    assert b.verdict == "miss" and b.loss_points > 10 and b.loss_low > 10
    assert c.best_at_grid_edge and pd.isna(c.measured_elbow) and c.verdict == "hit"
    assert d.verdict == "pending" and unswept.verdict == "not swept"  # r=3 is not a rank of a's sweep
    text = advice_table.describe_judged(table)
    assert "1 advised a rank their sweep does not run" in text
    assert "on 2 of 5 pairs" in text and "Miss: b/mini-s" in text and "c/mini-s" in text and "3.8%" in text


@pytest.mark.slow
def test_advise_probes_a_folder_through_the_store(isolated_home):
    folder = fx.write_image_folder(isolated_home / "pics", per_class=100)
    lines: list[str] = []
    advice = advisor.advise(str(folder), "mini-s", profile="smoke", log=lines.append, epochs=3, limit=None,
                            pretrained=False, batch_size=64)
    assert advice.rank in protocol("smoke").ranks and len(lines) == 2
    assert [c["rank"] for c in advice.curve] == sorted(protocol("smoke").ranks)
    assert all(a["captured"] <= b["captured"] + 1e-12 for a, b in zip(advice.curve, advice.curve[1:]))
    assert "rank" in advice.markdown() and advice.to_dict()["summary"] == advice.summary


def test_the_advisor_grid_is_two_short_probes_per_pair():
    from adaptertune.paper import experiments

    configs = experiments.grid("advisor", "mini")
    p = protocol("mini")
    assert len(configs) == 2 * len(p.datasets) * len(p.backbones)
    adapters = [c for c in configs if c.method == "adapter"]
    assert {(c.rank, c.every, c.start) for c in adapters} == {(max(p.ranks), 1, 0)}
    full_epochs = {d: experiments.recipe("mini", d)["epochs"] for d in p.datasets}
    assert all(c.epochs == -(-full_epochs[c.dataset] * 2 // 5) for c in configs)
    assert {c.head_mode for c in configs if c.method == "head"} == {"cached_features"}


@pytest.mark.slow
def test_fit_with_rank_auto_takes_the_advice(isolated_home):
    from adaptertune.paper import fit as fitting

    folder = fx.write_image_folder(isolated_home / "pics", per_class=100)
    small = dict(profile="smoke", epochs=3, limit=None, pretrained=False, batch_size=64)
    advice = advisor.advise(str(folder), "mini-s", log=lambda s: None, **small)
    report = fitting.fit(str(folder), "mini-s", rank="auto", out=isolated_home / "out", log=lambda s: None, **small)
    assert report.rank == advice.rank and report.rank_advice["summary"] == advice.summary
    assert f"Rank: {advice.rank}" in (isolated_home / "out" / "report.md").read_text()
