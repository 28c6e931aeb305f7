"""The statistics behind every verdict: intervals over seeds, paired where seeds pair, and tests that may say
"not enough evidence". Pure functions of accuracy arrays (fractions in, points out where stated).

Seeds pair when two runs share a seed on the same dataset: they share the validation split, the data order and
the augmentation stream, so the per-seed difference removes that shared noise. The intervals are Student-t
intervals over seeds (95% by default) and say how many seeds they rest on; with n = 1 there is no interval.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

LEVEL = 0.95
# "near", "nearly equal", "at the elbow": within ±1 point of test accuracy. One margin for every such claim; an
# equivalence needs evidence (TOST), a non-significant difference is not one.
EQUIVALENCE_POINTS = 1.0


@dataclass(frozen=True)
class Interval:
    """An estimate with its ``LEVEL`` interval; ``how`` names the method and the n it rests on."""

    estimate: float
    low: float
    high: float
    n: int
    how: str

    @property
    def sign(self) -> int:
        """+1 / −1 when the interval excludes 0 on that side, 0 when it contains 0 (or does not exist)."""
        if math.isnan(self.low) or math.isnan(self.high):
            return 0
        return 1 if self.low > 0 else -1 if self.high < 0 else 0

    def fmt(self, scale: float = 100.0, unit: str = "", digits: int = 2) -> str:
        """``+3.21 [+1.02, +5.40]`` (× ``scale``), or the estimate alone with its n when there is no interval."""
        e = f"{scale * self.estimate:+.{digits}f}{unit}"
        if math.isnan(self.low):
            return f"{e} (no interval: {self.how})"
        return f"{e} [{scale * self.low:+.{digits}f}, {scale * self.high:+.{digits}f}]{unit}"


def _t_interval(values: np.ndarray, how: str, level: float) -> Interval:
    if not 0 < level < 1:
        raise ValueError(f"level={level!r} is not allowed: use a confidence level in (0, 1)")
    n = len(values)
    mean = float(values.mean()) if n else math.nan
    if n < 2:
        return Interval(mean, math.nan, math.nan, n, f"{how}, n={n}")
    half = stats.t.ppf(0.5 + level / 2, n - 1) * values.std(ddof=1) / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n, f"{how}, n={n}")


def mean_interval(values: Sequence[float], level: float = LEVEL) -> Interval:
    """Mean over seeds with its t-interval."""
    return _t_interval(np.asarray(values, dtype=np.float64), "t-interval over seeds", level)


def difference(a: pd.Series, b: pd.Series, level: float = LEVEL, paired: bool = True) -> Interval:
    """``mean(a) − mean(b)``: paired over the seeds both have (the index, e.g. seed), Welch's t otherwise.

    Pairing needs at least two shared seeds and no unshared ones; anything else falls back to Welch. ``paired=False``
    forces Welch: runs on different datasets share a seed number but no data stream.
    """
    a, b = a.dropna().astype(float), b.dropna().astype(float)
    shared = a.index.intersection(b.index)
    if paired and len(shared) >= 2 and len(shared) == len(a) == len(b):
        return _t_interval((a.loc[shared] - b.loc[shared]).to_numpy(), "paired t over seeds", level)
    n = min(len(a), len(b))
    estimate = float(a.mean() - b.mean()) if len(a) and len(b) else math.nan
    if len(a) < 2 or len(b) < 2:
        return Interval(estimate, math.nan, math.nan, n, f"Welch t, n={len(a)}+{len(b)}")
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return Interval(estimate, estimate, estimate, n, f"Welch t, n={len(a)}+{len(b)} (no spread)")
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = stats.t.ppf(0.5 + level / 2, df) * se
    return Interval(estimate, estimate - half, estimate + half, n, f"Welch t, n={len(a)}+{len(b)}")


@dataclass(frozen=True)
class Equivalence:
    """Two one-sided tests (TOST) of ``|a − b| < margin`` at ``1 − LEVEL``: equivalent when the ``2·LEVEL − 1`` (90%)
    interval lies inside ±margin; *beyond* the margin when the ``LEVEL`` (95%) interval lies entirely outside it."""

    tost: Interval  # the 90% interval (the two one-sided 5% tests)
    interval: Interval  # the 95% interval
    margin: float

    @property
    def outcome(self) -> int:
        """+1 equivalent, −1 different by more than the margin, 0 neither (or no interval)."""
        if math.isnan(self.tost.low):
            return 0
        if -self.margin <= self.tost.low and self.tost.high <= self.margin:
            return 1
        return -1 if self.interval.low > self.margin or self.interval.high < -self.margin else 0

    def fmt(self) -> str:
        return f"{self.interval.fmt()} (90%: {self.tost.fmt()}; {self.interval.how})"


def equivalence(a: pd.Series, b: pd.Series, margin: float = EQUIVALENCE_POINTS / 100) -> Equivalence:
    """Is ``a`` within ±``margin`` (fractions) of ``b``? Paired over shared seeds like :func:`difference`."""
    if not margin > 0:
        raise ValueError(f"margin={margin!r} is not allowed: use a positive difference in accuracy (fractions)")
    return Equivalence(difference(a, b, level=2 * LEVEL - 1), difference(a, b), margin)


@dataclass(frozen=True)
class PairedVarianceTest:
    """Pitman–Morgan test of equal variances of two *paired* samples (the same seeds in both arms).

    ``cov(a + b, a − b) = var(a) − var(b)``, so equal variances means the sums and differences are uncorrelated:
    ``t = r·√(n − 2) / √(1 − r²)`` with n − 2 degrees of freedom. Unlike the F-test it keeps the pairing, which
    matters when a seed's data order moves both arms together.
    """

    sd_a: float
    sd_b: float
    n: int
    ratio: float  # var(a) / var(b)
    r: float  # correlation of (a + b) with (a − b)
    t: float
    p_value: float

    @property
    def significant(self) -> bool:
        return not math.isnan(self.p_value) and self.p_value < 1 - LEVEL


def pitman_morgan(a: Sequence[float], b: Sequence[float]) -> PairedVarianceTest:
    """Paired test of ``var(a) == var(b)`` over n ≥ 3 pairs (``a[i]``, ``b[i]``: one seed); NaN p below 3 pairs."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired samples must be 1-d of equal length, got shapes {a.shape} and {b.shape}")
    n = len(a)
    sd_a, sd_b = (float(a.std(ddof=1)), float(b.std(ddof=1))) if n > 1 else (math.nan, math.nan)
    if n < 3:
        return PairedVarianceTest(sd_a, sd_b, n, math.nan, math.nan, math.nan, math.nan)
    s, d = a + b, a - b
    if s.std() == 0 or d.std() == 0:  # no spread in a sum or difference: the variances are equal (or degenerate)
        ratio = 1.0 if sd_a == sd_b else math.inf if sd_b == 0 else sd_a ** 2 / sd_b ** 2
        return PairedVarianceTest(sd_a, sd_b, n, ratio, 0.0, 0.0, 1.0)
    r = float(np.corrcoef(s, d)[0, 1])
    t = r * math.sqrt(n - 2) / math.sqrt(max(1 - r * r, 1e-300))
    p = float(2 * stats.t.sf(abs(t), n - 2))
    ratio = sd_a ** 2 / sd_b ** 2 if sd_b > 0 else math.inf
    return PairedVarianceTest(sd_a, sd_b, n, ratio, r, t, p)


@dataclass(frozen=True)
class VarianceTest:
    """Two-sided F-test of equal variances: the ratio of sample variances and the ratio it would need."""

    sd_a: float
    sd_b: float
    n_a: int
    n_b: int
    ratio: float
    p_value: float
    needed: float  # the variance ratio (larger / smaller) that would reach significance at LEVEL

    @property
    def significant(self) -> bool:
        return not math.isnan(self.p_value) and self.p_value < 1 - LEVEL


def variance_test(a: Sequence[float], b: Sequence[float]) -> VarianceTest:
    """Is the spread over seeds of ``a`` different from that of ``b``? (F-test; normal seeds assumed)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 2 or len(b) < 2:
        return VarianceTest(math.nan, math.nan, len(a), len(b), math.nan, math.nan, math.nan)
    va, vb = a.var(ddof=1), b.var(ddof=1)
    if va == 0 and vb == 0:
        return VarianceTest(0.0, 0.0, len(a), len(b), 1.0, 1.0, math.nan)
    ratio = va / vb if vb > 0 else math.inf
    big, small = (len(a) - 1, len(b) - 1) if ratio >= 1 else (len(b) - 1, len(a) - 1)
    f = max(ratio, 1 / ratio) if ratio not in (0, math.inf) else math.inf
    p = min(1.0, 2 * stats.f.sf(f, big, small))
    needed = float(stats.f.ppf(0.5 + LEVEL / 2, big, small))
    return VarianceTest(math.sqrt(va), math.sqrt(vb), len(a), len(b), float(ratio), float(p), needed)


def concavity(x: Sequence[float], y: Sequence[float], level: float = LEVEL) -> Interval:
    """The curvature ``c`` of ``y ≈ a + b·x + c·x²`` by least squares, with its t-interval (``c < 0``: diminishing
    returns in x). Every seed is one observation, so the interval accounts for the seed noise."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    X = np.column_stack([np.ones_like(x), x, x ** 2])
    n, k = X.shape
    if n <= k or len(np.unique(x)) < 3:
        return Interval(math.nan, math.nan, math.nan, n, f"quadratic fit needs >= 3 x values and > 3 points, n={n}")
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ coef
    sigma2 = resid @ resid / (n - k)
    se = math.sqrt(sigma2 * np.linalg.inv(X.T @ X)[2, 2])
    half = stats.t.ppf(0.5 + level / 2, n - k) * se
    return Interval(float(coef[2]), float(coef[2] - half), float(coef[2] + half), n, f"OLS curvature, n={n} runs")


def slope(x: Sequence[float], y: Sequence[float], level: float = LEVEL) -> Interval:
    """The least-squares slope of ``y`` on ``x`` with its t-interval (every seed one observation)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    n = len(x)
    if n < 3 or len(np.unique(x)) < 2:
        return Interval(math.nan, math.nan, math.nan, n, f"slope needs >= 3 points at >= 2 x values, n={n}")
    X = np.column_stack([np.ones(n), x])
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ coef
    se = math.sqrt(resid @ resid / (n - 2) * np.linalg.inv(X.T @ X)[1, 1])
    half = stats.t.ppf(0.5 + level / 2, n - 2) * se
    return Interval(float(coef[1]), float(coef[1] - half), float(coef[1] + half), n, f"OLS slope, n={n} runs")


__all__ = ["EQUIVALENCE_POINTS", "LEVEL", "Equivalence", "Interval", "PairedVarianceTest", "VarianceTest", "concavity",
           "difference", "equivalence", "mean_interval", "pitman_morgan", "slope", "variance_test"]
