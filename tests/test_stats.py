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
