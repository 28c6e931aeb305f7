"""The rank advisor: the rule on the measured probe curve and the placement advice from spectra, its cost against the
rank sweep, the judged table (elbow, loss, hit rate, grid edge), and one end-to-end probe on a small folder."""
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


def test_the_advice_is_the_smallest_probed_rank_within_the_margin_of_the_best():
    q = np.linalg.qr(np.random.default_rng(0).normal(size=(64, 64)))[0].T
    accs = {1: .70, 2: .75, 4: .80, 8: .84, 16: .855, 32: .86, 64: .858}
    rank, every2, overlap, curve = advisor.advice_from([_spectrum(3.0, shared=q)] * 4, accs, 1000)
    assert rank == 16 and every2 and overlap == pytest.approx(1.0)  # .855 >= .86 - 1 point; 8 is 2 points short
    assert [c["rank"] for c in curve] == list(RANKS) and [c["val_acc"] for c in curve] == list(accs.values())
    assert all(c["low"] < c["val_acc"] < c["high"] for c in curve)
    assert all(a["captured"] <= b["captured"] + 1e-12 for a, b in zip(curve, curve[1:]))
    unrelated = advisor.advice_from([_spectrum(0.6, seed=i) for i in range(4)], accs, 1000)
    assert unrelated[0] == 16 and not unrelated[1]  # blocks shifting along unrelated directions keep every=1


def test_a_flat_probe_curve_advises_the_smallest_rank():
    rank, *_ = advisor.advice_from([_spectrum(0.3)], {r: 0.6 for r in RANKS}, 1000)
    assert rank == 1
    rank, *_ = advisor.advice_from([_spectrum(0.3)], {1: .5, 4: .6, 16: .7, 64: .8}, 1000)
    assert rank == 64  # still rising at the largest rank: advise it


@pytest.mark.parametrize("profile", ["mini", "paper"])
def test_the_probe_costs_at_most_15_percent_of_the_rank_sweep(profile):
    for dataset in protocol(profile).datasets:
        runs, share = advisor.probe_cost(profile, dataset)
        assert share <= advisor.MAX_COST_SHARE and runs < len(advisor.probe_ranks(profile))


def _advice(dataset: str, rank: int) -> advisor.Advice:
    return advisor.Advice(dataset, "mini-s", "mini", rank, False, 0.1, [], 300, [], 0.8, 0.038)


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
    assert advice.rank in advisor.probe_ranks("smoke") and len(lines) == len(advisor.probe_ranks("smoke"))
    assert [c["rank"] for c in advice.curve] == list(advisor.probe_ranks("smoke"))
    assert all(a["captured"] <= b["captured"] + 1e-12 for a, b in zip(advice.curve, advice.curve[1:]))
    assert "rank" in advice.markdown() and advice.to_dict()["summary"] == advice.summary


def test_the_advisor_grid_is_one_short_probe_per_rank_and_pair():
    from adaptertune.paper import experiments

    configs = experiments.grid("advisor", "mini")
    p = protocol("mini")
    assert len(configs) == len(p.pair_ranks) * len(p.datasets) * len(p.backbones)
    assert {c.method for c in configs} == {"adapter"} and {(c.every, c.start) for c in configs} == {(1, 0)}
    assert {c.rank for c in configs} == set(p.pair_ranks) == set(advisor.probe_ranks("mini"))  # every pair's sweep
    full_epochs = {d: experiments.recipe("mini", d)["epochs"] for d in p.datasets}
    assert all(c.epochs == -(-full_epochs[c.dataset] * 2 // 5) for c in configs)


@pytest.mark.slow
def test_fit_with_rank_auto_takes_the_advice(isolated_home):
    from adaptertune.paper import fit as fitting

    folder = fx.write_image_folder(isolated_home / "pics", per_class=100)
    small = dict(profile="smoke", epochs=3, limit=None, pretrained=False, batch_size=64)
    advice = advisor.advise(str(folder), "mini-s", log=lambda s: None, **small)
    report = fitting.fit(str(folder), "mini-s", rank="auto", out=isolated_home / "out", log=lambda s: None, **small)
    assert report.rank == advice.rank and report.rank_advice["summary"] == advice.summary
    assert f"Rank: {advice.rank}" in (isolated_home / "out" / "report.md").read_text()
