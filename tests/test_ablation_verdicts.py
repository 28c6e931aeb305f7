"""Ablation verdicts on hand-made runs: the elbow rule refuses the grid edge, the variance test needs its ratio,
"nearly equal" is an equivalence test, and a "best" value must beat the seed noise."""
import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from adaptertune.paper import ablation_verdicts as av  # noqa: E402
from adaptertune.paper.verdicts import AGREES, DISAGREES, INCONCLUSIVE, NOT_TESTED  # noqa: E402

OFFSETS = (-0.005, 0.0, 0.005)  # the same offset per seed at every rank: paired differences are exact


def rank_runs(means: dict[int, float]) -> pd.DataFrame:
    rows = [{"dataset": "d", "backbone": "b", "method": "adapter", "rank": r, "seed": s, "test_acc": m + OFFSETS[s],
             "trainable_params": r} for r, m in means.items() for s in range(3)]
    return pd.DataFrame(rows)


PLATEAU = {1: 0.70, 2: 0.75, 4: 0.79, 8: 0.80, 16: 0.82, 32: 0.82, 64: 0.82}
RISING = {r: 0.70 + 0.02 * np.log2(r) for r in PLATEAU}


def test_elbow_is_the_smallest_rank_not_below_the_best():
    assert av.measured_elbow(rank_runs(PLATEAU)) == (16, False)
    mono, dimin, r32 = av.verdicts_rank(rank_runs(PLATEAU))
    assert mono.verdict == AGREES and dimin.verdict == AGREES and r32.verdict == AGREES
    assert "measured elbow r=16" in r32.measured


def test_a_grid_edge_is_no_elbow():
    assert av.measured_elbow(rank_runs(RISING)) == (64, True)
    mono, dimin, r32 = av.verdicts_rank(rank_runs(RISING))
    assert mono.verdict == AGREES and dimin.verdict == INCONCLUSIVE  # a straight line in log r: no curvature
    assert r32.verdict == DISAGREES and "none within the grid" in r32.measured
    assert av.measured_elbow(rank_runs({})) == (None, False) and av.verdicts_rank(rank_runs({})) == []


def init_runs(zero: list[float], random: list[float], std: float = 1e-4) -> pd.DataFrame:
    rows = [{"method": "adapter", "init": name, "init_std": 1e-4 if name == "zero" else std, "seed": s, "test_acc": a}
            for name, accs in (("zero", zero), ("random", random)) for s, a in enumerate(accs)]
    return pd.DataFrame(rows)


def test_elbow_needs_equivalence_not_a_missed_significance():
    # r=8 is 3 points below the best with noisy pairs: not significantly below, but not within ±1 point either
    noisy = rank_runs({1: 0.70, 2: 0.75, 4: 0.79, 8: 0.79, 16: 0.82, 32: 0.82, 64: 0.82})
    noisy.loc[noisy["rank"] == 8, "test_acc"] += np.array([-0.04, 0.0, 0.04])
    assert av.measured_elbow(noisy) == (16, False)


def test_r32_near_the_peak_by_equivalence():
    _, _, agrees = av.verdicts_rank(rank_runs(PLATEAU))
    assert agrees.verdict == AGREES and "90%" in agrees.measured
    below = {**PLATEAU, 32: 0.78}  # 4 points below an interior best
    assert av.verdicts_rank(rank_runs(below))[2].verdict == DISAGREES
    unsure = rank_runs({**PLATEAU, 32: 0.815})
    unsure.loc[unsure["rank"] == 32, "test_acc"] += np.array([-0.03, 0.0, 0.03])
    assert av.verdicts_rank(unsure)[2].verdict == INCONCLUSIVE
    edge = {**PLATEAU, 64: 0.825}  # r=32 within half a point of a best at the grid's edge: the peak is unknown
    assert av.verdicts_rank(rank_runs(edge))[2].verdict == INCONCLUSIVE
    no32 = rank_runs({r: m for r, m in PLATEAU.items() if r != 32})
    assert av.verdicts_rank(no32)[2].verdict == NOT_TESTED


def test_rank_verdicts_combine_pairs():
    two = pd.concat([rank_runs(PLATEAU), rank_runs({**PLATEAU, 32: 0.78}).assign(dataset="e")])
    mono, _, r32 = av.verdicts_rank(two)
    assert r32.verdict == DISAGREES and "d/b: agrees" in r32.measured and "e/b: disagrees" in r32.measured
    assert mono.verdict == DISAGREES and len(av.rank_steps(two)) == 14  # e/b loses from r=16 to r=32


def test_init_variance_is_a_paired_test():
    few = av.verdicts_init(init_runs([0.80, 0.81, 0.82], [0.79, 0.83, 0.815]))
    assert few[0].verdict == INCONCLUSIVE and "Pitman–Morgan" in few[0].measured
    many = av.verdicts_init(init_runs(list(0.8 + 0.001 * np.arange(8)), list(0.8 + 0.01 * np.arange(8))))
    assert many[0].verdict == AGREES and many[1].verdict == AGREES  # random: higher mean too


def test_init_is_decided_at_the_papers_sigma_and_reports_the_others():
    zero = list(0.8 + 0.001 * np.arange(8))
    runs = pd.concat([init_runs(zero, zero), init_runs(zero, list(0.8 + 0.01 * np.arange(8)), std=1e-2)
                      .query("init == 'random'")], ignore_index=True)
    variance, mean = av.verdicts_init(runs)
    # equal arms at 1e-4 decide (no variance difference); the large sigma's spread is reported, not judged
    assert variance.verdict != AGREES and "at sigma=0.01" in variance.measured and "at sigma=0.01" in mean.measured
    assert av.verdicts_init(runs[runs["init"] == "zero"]) == []  # no random arm at the paper's sigma: no verdict


def placement_runs(every2_offset: float) -> pd.DataFrame:
    rows = [{"method": "adapter", "every": e, "start": 0, "seed": s, "test_acc": 0.8 + OFFSETS[s] + (every2_offset if e == 2 else 0),
             "trainable_params": 10 // e, "train_images_per_s": 100.0 * e} for e in (1, 2) for s in range(3)]
    return pd.DataFrame(rows)


def test_placement_is_an_equivalence_test():
    assert av.verdict_placement(placement_runs(-0.002)).verdict == AGREES
    assert av.verdict_placement(placement_runs(-0.05)).verdict == DISAGREES
    unclear = placement_runs(-0.01)
    unclear.loc[unclear["every"] == 2, "test_acc"] += np.array([-0.01, 0.0, 0.01])
    assert av.verdict_placement(unclear).verdict == INCONCLUSIVE  # not significant, yet no evidence of equivalence
    costs = av.placement_costs(placement_runs(0.0))
    assert "0.50× the trainable parameters." in costs and "throughput" not in costs


def sensitivity_runs(seeds: int) -> pd.DataFrame:
    base = {"lr": 1e-3, "weight_decay": 0.05, "scale": 1.0}
    values = [({}, 0.810), ({"lr": 3e-3}, 0.812), ({"lr": 3e-4}, 0.700), ({"weight_decay": 0.0}, 0.809),
              ({"scale": 0.5}, 0.805), ({"scale": 4.0}, 0.780)]
    return pd.DataFrame([{"method": "adapter", "seed": s, **base, **change, "test_acc": acc + OFFSETS[s]}
                         for change, acc in values for s in range(seeds)])


def test_sensitivity_compares_values_by_paired_intervals():
    defaults = {"lr": 1e-3, "weight_decay": 0.05, "scale": 1.0}
    scale, robust = av.verdicts_sensitivity(sensitivity_runs(3), defaults)
    assert scale.verdict == AGREES and "s=4 − the recipe's scale (s=1)" in scale.measured
    runs = sensitivity_runs(3)
    runs.loc[runs["scale"] == 0.5, "test_acc"] += 0.05  # a better smaller scale is not the comparator: the recipe's is
    assert "the recipe's scale (s=1)" in av.verdicts_sensitivity(runs, defaults)[0].measured
    assert robust.verdict == DISAGREES and "more than 1 point below the best: lr=0.0003" in robust.measured
    best = av.best_values(sensitivity_runs(3), defaults)
    assert "- lr: best 0.003, ahead of the runner-up (0.001)" in best
    one = av.verdicts_sensitivity(sensitivity_runs(1), defaults)
    assert [v.verdict for v in one] == [INCONCLUSIVE, INCONCLUSIVE]  # one seed: no interval, no decision
    assert "no value beats the others beyond the seed noise" in av.best_values(sensitivity_runs(1), defaults)


def test_early_drift_is_untestable_when_the_random_init_does_not_move_the_loss():
    steps = pd.DataFrame([{"init": i, "seed": s, "step": t, "epoch": 1, "loss": 1.0 - 0.01 * t}
                          for i in ("zero", "random") for s in range(3) for t in range(5)])
    v = av.verdict_early(steps, 2.0)
    assert v.verdict == NOT_TESTED and "not tested at this init scale" in v.rule
    assert av.verdict_early(steps.iloc[:0], 2.0) is None
