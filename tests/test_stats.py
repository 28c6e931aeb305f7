"""Intervals and tests over seeds, checked against values computed by hand."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from adaptertune.paper import stats

T2 = 4.302652729749462  # t(0.975, 2)


def test_mean_interval_is_a_t_interval():
    iv = stats.mean_interval([1.0, 2.0, 3.0])
    assert iv.estimate == 2.0 and iv.n == 3
    assert iv.high - iv.estimate == pytest.approx(T2 * 1.0 / math.sqrt(3))
    single = stats.mean_interval([5.0])
    assert math.isnan(single.low) and single.sign == 0 and "no interval" in single.fmt()


def test_difference_pairs_shared_seeds_and_falls_back_to_welch():
    a = pd.Series([0.80, 0.82, 0.84], index=[0, 1, 2])
    b = pd.Series([0.70, 0.71, 0.72], index=[0, 1, 2])
    paired = stats.difference(a, b)
    d = (a - b).to_numpy()
    assert paired.how.startswith("paired") and paired.estimate == pytest.approx(d.mean())
    assert paired.high - paired.estimate == pytest.approx(T2 * d.std(ddof=1) / math.sqrt(3))
    assert paired.sign == 1 and "[+" in paired.fmt()
    welch = stats.difference(a, b, paired=False)
    assert welch.how.startswith("Welch") and welch.estimate == pytest.approx(paired.estimate)
    assert welch.high - welch.low > paired.high - paired.low  # pairing removes the shared seed noise here
    unpaired = stats.difference(a, pd.Series([0.7, 0.71], index=[5, 6]))
    assert unpaired.how.startswith("Welch")


def test_variance_test_needs_a_large_ratio_at_three_seeds():
    small = stats.variance_test([0.80, 0.81, 0.82], [0.70, 0.75, 0.80])
    assert small.ratio == pytest.approx(0.04) and small.needed == pytest.approx(39.0, rel=1e-6)
    assert small.significant is False or small.p_value < 0.05
    eight = stats.variance_test(np.linspace(0, 0.01, 8), np.linspace(0, 0.1, 8))
    assert eight.significant and eight.ratio < 1 and eight.needed == pytest.approx(4.99, abs=0.01)
    assert math.isnan(stats.variance_test([1.0], [1.0, 2.0]).p_value)


def test_concavity_and_slope_recover_known_coefficients():
    x = np.repeat(np.arange(7.0), 3)
    noise = np.tile([-0.01, 0.0, 0.01], 7)
    curve = stats.concavity(x, 1.0 + 0.5 * x - 0.05 * x ** 2 + noise)
    assert curve.estimate == pytest.approx(-0.05, abs=1e-9) and curve.sign == -1
    line = stats.slope(x, 2.0 - 0.3 * x + noise)
    assert line.estimate == pytest.approx(-0.3, abs=1e-9) and line.sign == -1
    assert math.isnan(stats.slope([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]).estimate)


def test_equivalence_needs_a_90_percent_interval_inside_the_margin():
    base = pd.Series([0.800, 0.810, 0.820, 0.830], index=range(4))
    same = stats.equivalence(base + pd.Series([0.001, -0.001, 0.002, 0.0]), base)  # tight and tiny: equivalent
    assert same.outcome == 1 and same.margin == pytest.approx(0.01)
    assert same.tost.high - same.tost.low < same.interval.high - same.interval.low  # 90% is narrower than 95%
    far = stats.equivalence(base + pd.Series([0.05, 0.06, 0.05, 0.06]), base)  # clearly beyond the margin
    assert far.outcome == -1
    noisy = stats.equivalence(base + pd.Series([0.03, -0.03, 0.02, -0.02]), base)  # not significant, not equivalent
    assert noisy.outcome == 0 and noisy.interval.sign == 0
    assert stats.equivalence(base[:1], base[:1]).outcome == 0  # one seed: no interval, no equivalence
    with pytest.raises(ValueError, match="margin=0"):
        stats.equivalence(base, base, margin=0)


def test_pitman_morgan_matches_its_variance_ratio_form():
    rng = np.random.default_rng(3)
    a = rng.normal(0, 1, 8)
    b = 0.6 * a + rng.normal(0, 3, 8)  # correlated pairs, larger spread in b
    test = stats.pitman_morgan(a, b)
    # the textbook form: t = (F − 1)·√(n − 2) / (2·√(F·(1 − ρ²))), F = var(a)/var(b), ρ = corr(a, b)
    f, rho = a.var(ddof=1) / b.var(ddof=1), np.corrcoef(a, b)[0, 1]
    t = (f - 1) * math.sqrt(6) / (2 * math.sqrt(f * (1 - rho ** 2)))
    assert test.t == pytest.approx(t) and test.ratio == pytest.approx(f)
    assert test.p_value == pytest.approx(2 * (1 - __import__("scipy").stats.t.cdf(abs(t), 6)))
    assert test.significant and test.ratio < 1
    swapped = stats.pitman_morgan(b, a)
    assert swapped.p_value == pytest.approx(test.p_value) and swapped.t == pytest.approx(-test.t)


def test_pitman_morgan_keeps_the_pairing_the_f_test_ignores():
    # b moves with a seed by seed and adds its own small spread: the F-test sees two similar spreads, the paired test
    # sees that b's extra variance is real (its difference from a correlates with the sum)
    a = np.array([0.70, 0.80, 0.75, 0.85, 0.72, 0.78, 0.83, 0.77])
    b = a + 0.3 * (a - a.mean()) + np.array([0.001, -0.001, 0.0, 0.001, -0.001, 0.0, 0.001, -0.001])
    assert not stats.variance_test(a, b).significant and stats.pitman_morgan(a, b).significant
    assert math.isnan(stats.pitman_morgan([1.0, 2.0], [1.0, 3.0]).p_value)
    assert stats.pitman_morgan([0.5, 0.6, 0.7], [0.5, 0.6, 0.7]).p_value == 1.0
    with pytest.raises(ValueError, match="equal length"):
        stats.pitman_morgan([1.0, 2.0, 3.0], [1.0, 2.0])
