"""Section 4 of the paper, measured: the task shift, its (data-weighted) spectrum, the rank elbow and the bound.

The paper linearises the shift that full fine-tuning applies to a block output, ``h -> h + Δ(h) ≈ h + M h``,
and argues that a rank-r adapter can reach ``E‖Δ(h) − A(h)‖² ≤ B² Σ_{i>r} σ_i²`` (Eckart–Young–Mirsky).
Here the shift is *measured* per block on stored runs (:mod:`adaptertune.paper.shifts`), ``M`` is estimated
by least squares, and the spectrum is read two ways: the plain singular values of ``M``, and the
data-weighted ones of ``M Σ_h^{1/2}`` (Σ_h the covariance of the block's tokens), whose tail is exactly the
expected squared error the best rank-r linear map loses on those tokens. What no linear map captures is
``1 − R²``. The elbow is predicted as a *range* over energy thresholds and measured with a paired t-test
over seeds that refuses the grid's edge (:mod:`adaptertune.paper.elbow`); :func:`verdict` states the
comparison. The synthetic helpers check the bound where the answer is known.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .elbow import ENERGIES, MeasuredElbow, PredictedElbow, check_energy, elbow_agreement

# what a measured block map is: full fine-tuning's task shift, a trained adapter's residual on real block outputs
# (least-squares map), or that adapter's linearisation at h = 0
KIND_FULL, KIND_ADAPTER, KIND_LINEARISED = "full FT shift", "trained adapter", "adapter linearised at 0"
KINDS = (KIND_FULL, KIND_ADAPTER, KIND_LINEARISED)


# -- the least-squares map of one block's shift ------------------------------------------------------------
@dataclass(frozen=True)
class ShiftFit:
    """``D ≈ H Mᵀ + b`` for one block: the map, its data-weighted spectrum and the share of the shift it explains.

    ``weighted`` holds the singular values τ_i of ``M Σ_h^{1/2}``: ``Σ_{i>r} τ_i²`` is the mean squared error
    (per token) that the best rank-r map loses against ``M`` on these inputs. ``total_var`` is the shift's own
    variance ``tr Cov(D)``; for a least-squares fit ``Σ τ_i² = r2 · total_var`` and ``1 − r2`` is the nonlinear
    residual no linear map captures (NaN for a map that was not fitted to a shift).
    """

    M: np.ndarray
    b: np.ndarray
    r2: float
    weighted: np.ndarray
    total_var: float

    @property
    def singular_values(self) -> np.ndarray:
        return np.linalg.svd(self.M, compute_uv=False)


def weighted_singular_values(M: np.ndarray, H: np.ndarray) -> np.ndarray:
    """Singular values of ``M Σ_h^{1/2}`` with Σ_h the (1/n) covariance of the rows of H.

    Computed as the singular values of ``(H − mean) Mᵀ / sqrt(n)`` (the same numbers, no matrix square root):
    the spectrum of the linear part of the shift as it shows on the data.
    """
    M, H = np.asarray(M, dtype=np.float64), np.asarray(H, dtype=np.float64)
    if H.ndim != 2 or M.ndim != 2 or M.shape[1] != H.shape[1]:
        raise ValueError(f"M {M.shape} and H {H.shape} do not fit: M must be (k, d) for H of shape (n, d)")
    centred = H - H.mean(0)
    return np.linalg.svd(centred @ M.T / np.sqrt(len(H)), compute_uv=False)


def estimate_shift(H: np.ndarray, D: np.ndarray, intercept: bool = True) -> ShiftFit:
    """Least squares for ``D ≈ H Mᵀ (+ b)``; ``r2`` is the fraction of the shift's variance the linear map explains.

    The intercept mirrors the adapter's ``b_up``: a constant offset is not part of ``M``'s spectrum.
    """
    H, D = np.asarray(H, dtype=np.float64), np.asarray(D, dtype=np.float64)
    if H.ndim != 2 or D.shape != H.shape:
        raise ValueError(f"H and D must be (n, d) arrays of equal shape, got {H.shape} and {D.shape}")
    if len(H) < H.shape[1]:
        raise ValueError(f"n={len(H)} samples cannot determine a {H.shape[1]}×{H.shape[1]} map: use n >= d")
    h_mean = H.mean(0) if intercept else np.zeros(H.shape[1])
    d_mean = D.mean(0) if intercept else np.zeros(D.shape[1])
    coef, *_ = np.linalg.lstsq(H - h_mean, D - d_mean, rcond=None)
    M = coef.T
    b = d_mean - M @ h_mean
    resid = D - (H @ M.T + b)
    total = ((D - D.mean(0)) ** 2).sum()
    r2 = float(1.0 - (resid ** 2).sum() / total) if total > 0 else 1.0
    return ShiftFit(M=M, b=b, r2=r2, weighted=weighted_singular_values(M, H), total_var=float(total / len(H)))


def linear_map(M: np.ndarray, H: np.ndarray) -> ShiftFit:
    """A given map (e.g. an adapter's linearisation) read on inputs H: its spectra, no fit (``r2`` is NaN)."""
    weighted = weighted_singular_values(M, H)
    return ShiftFit(M=np.asarray(M, dtype=np.float64), b=np.zeros(len(M)), r2=float("nan"), weighted=weighted,
                    total_var=float((weighted ** 2).sum()))


# -- spectrum, tail and decay ---------------------------------------------------------------------------
def tail_error(sigmas: np.ndarray, ranks) -> np.ndarray:
    """``sqrt(Σ_{i>r} σ_i²)`` for each r: the Frobenius error of the best rank-r approximation (Eckart–Young)."""
    s = np.sort(np.asarray(sigmas, dtype=np.float64))[::-1]
    tails = np.concatenate([np.cumsum((s ** 2)[::-1])[::-1], [0.0]])  # tails[r] = Σ_{i>=r+1} σ_i²
    ranks = np.asarray(ranks)
    if (ranks < 0).any():
        raise ValueError(f"ranks={ranks.tolist()} are not allowed: use ranks >= 0")
    return np.sqrt(tails[np.minimum(ranks, len(s))])


def tail_share(sigmas: np.ndarray, ranks) -> np.ndarray:
    """``Σ_{i>r} σ_i² / Σ σ_i²`` for each r: the share of the energy the best rank-r map loses (0 for a zero map)."""
    s2 = np.asarray(sigmas, dtype=np.float64) ** 2
    total = s2.sum()
    return tail_error(sigmas, ranks) ** 2 / total if total > 0 else np.zeros(len(np.atleast_1d(ranks)))


def truncate(M: np.ndarray, r: int) -> np.ndarray:
    """The best rank-r approximation of M (truncated SVD): what a rank-r linear adapter can at best reach."""
    U, s, Vt = np.linalg.svd(M, full_matrices=False)
    return (U[:, :r] * s[:r]) @ Vt[:r]


def fit_decay(sigmas: np.ndarray, top: int | None = None, skip: int = 0) -> tuple[float, float]:
    """``σ_i ≈ c · i^(−α)``: least squares on log σ vs log i over indices ``skip+1 .. top``; returns (α, c).

    ``top`` drops the noise floor of an estimated spectrum (its smallest values are estimation noise).
    """
    s = np.sort(np.asarray(sigmas, dtype=np.float64))[::-1]
    idx = np.arange(1, len(s) + 1)
    sel = slice(skip, top if top is not None else len(s))
    x, y = np.log(idx[sel]), s[sel]
    keep = y > 0
    if keep.sum() < 2:
        raise ValueError(f"need at least 2 positive singular values in the fitted range, got {int(keep.sum())}")
    slope, intercept = np.polyfit(x[keep], np.log(y[keep]), 1)
    return float(-slope), float(np.exp(intercept))


def energy_rank(sigmas: np.ndarray, energy: float = 0.9) -> int:
    """Smallest r whose top-r singular values hold ``energy`` of ``Σσ²``.

    Past it, doubling r buys little approximation (the tail decays like r^(1/2−α)) while the estimation
    term keeps growing like sqrt(r), so accuracy should flatten there.
    """
    check_energy(energy)
    s2 = np.sort(np.asarray(sigmas, dtype=np.float64))[::-1] ** 2
    if s2.sum() <= 0:
        raise ValueError("all singular values are 0: a zero map has no energy rank")
    captured = np.cumsum(s2) / s2.sum()
    return int(np.searchsorted(captured, energy - 1e-12) + 1)


def _pct(energy: float) -> str:
    return f"{100 * energy:g}"


def _runs(n: int) -> str:
    return f"{int(n)} run" + ("" if n == 1 else "s")


def estimation_term(ranks, dim: int, depth: int, n: int) -> np.ndarray:
    """``sqrt(L r d / n)``: the paper's estimation term, up to its unknown constant."""
    return np.sqrt(depth * np.asarray(ranks, dtype=np.float64) * dim / n)


def spectra_table(fits: Sequence[ShiftFit], ranks=(1, 2, 4, 8, 16, 32, 64), top: int | None = None,
                  energies: Sequence[float] = ENERGIES, blocks: Sequence[int] | None = None
                  ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two tables from per-block fits.

    ``spectrum`` (long): block, i, the plain σ_i of M (``sigma``, ``sigma_rel`` = σ_i/σ_1), the weighted τ_i of
    ``M Σ_h^{1/2}`` (``tau``, ``tau_rel``) and the cumulative weighted energy share (``cum_w_share``).
    ``summary`` (per block): decay fit (α, c), R² and the nonlinear share 1 − R², the plain and weighted energy
    rank at each threshold (``erank90``, ``erank_w90``, ...) and the weighted tail share at each rank
    (``tail_w_share_r16``: share of the weighted energy a rank-16 map loses).
    """
    for e in energies:
        check_energy(e)
    blocks = list(range(len(fits))) if blocks is None else list(blocks)
    spec_rows, sum_rows = [], []
    for block, fit in zip(blocks, fits):
        s, w = fit.singular_values, fit.weighted
        cum = np.cumsum(w ** 2) / (w ** 2).sum()
        spec_rows += [{"block": block, "i": i + 1, "sigma": v, "sigma_rel": v / s[0], "tau": t, "tau_rel": t / w[0],
                       "cum_w_share": c} for i, (v, t, c) in enumerate(zip(s, w, cum))]
        alpha, c = fit_decay(s, top=top)
        sum_rows.append({"block": block, "alpha": alpha, "c": c, "r2_linear": fit.r2, "nonlinear_share": 1 - fit.r2,
                         "fro_norm": float(np.sqrt((s ** 2).sum())), "shift_var": fit.total_var,
                         **{f"erank{_pct(e)}": energy_rank(s, e) for e in energies},
                         **{f"erank_w{_pct(e)}": energy_rank(w, e) for e in energies},
                         **{f"tail_w_share_r{r}": t for r, t in zip(ranks, tail_share(w, ranks))}})
    spec_cols = ["block", "i", "sigma", "sigma_rel", "tau", "tau_rel", "cum_w_share"]
    sum_cols = (["block", "alpha", "c", "r2_linear", "nonlinear_share", "fro_norm", "shift_var"]
                + [f"erank{_pct(e)}" for e in energies] + [f"erank_w{_pct(e)}" for e in energies]
                + [f"tail_w_share_r{r}" for r in ranks])
    return pd.DataFrame(spec_rows, columns=spec_cols), pd.DataFrame(sum_rows, columns=sum_cols)


def tail_curves(fits: Sequence[ShiftFit], ranks, blocks: Sequence[int] | None = None) -> pd.DataFrame:
    """Long table per block and rank: what the best rank-r map loses.

    ``tail_share`` (plain, of ‖M‖_F²) and ``tail_w_share`` (weighted, of Σ τ²) are shares of the linear part;
    ``tail_w`` / ``energy_w`` are the absolute weighted tail and energy (pooled over blocks by
    :func:`adaptertune.paper.elbow.predicted_elbow`); ``lost_share`` = ``tail_w`` / the shift's variance, to stack
    on ``nonlinear_share`` (1 − R²): together the share of the shift the best rank-r affine map misses.
    """
    blocks = list(range(len(fits))) if blocks is None else list(blocks)
    rows = []
    for block, fit in zip(blocks, fits):
        w2 = tail_error(fit.weighted, ranks) ** 2
        energy = float((fit.weighted ** 2).sum())
        rows += [{"block": block, "rank": int(r), "tail_share": t, "tail_w": tw, "energy_w": energy,
                  "tail_w_share": tw / energy if energy > 0 else 0.0,
                  "lost_share": tw / fit.total_var if fit.total_var > 0 else np.nan, "nonlinear_share": 1 - fit.r2}
                 for r, t, tw in zip(ranks, tail_share(fit.singular_values, ranks), w2)]
    return pd.DataFrame(rows, columns=["block", "rank", "tail_share", "tail_w", "energy_w", "tail_w_share", "lost_share",
                                       "nonlinear_share"])


def block_overview(summary: pd.DataFrame, energy: float = 0.9) -> pd.DataFrame:
    """α, 1 − R² and the plain / weighted energy rank at ``energy`` per block (rows) and dataset (columns); a dataset
    with several runs (seeds) shows their mean."""
    values = ["alpha", "nonlinear_share", f"erank{_pct(energy)}", f"erank_w{_pct(energy)}"]
    if summary.empty:
        return pd.DataFrame(columns=values)
    return summary.pivot_table(index="block", columns="dataset", values=values).round(3)


def kind_overview(summary: pd.DataFrame, energies: Sequence[float] = ENERGIES) -> pd.DataFrame:
    """Per kind of map (full-FT shift, trained adapter, ...) and block: n runs, mean R², and the weighted energy
    rank at each threshold as mean and sd over the runs (seeds): how many directions each one uses."""
    cols = [f"erank_w{_pct(e)}" for e in energies]
    if summary.empty:
        return pd.DataFrame(columns=["kind", "block", "n_runs", "r2_mean"] + [f"{c}_{a}" for c in cols for a in ("mean", "sd")])
    grouped = summary.groupby(["kind", "block"], sort=False)
    out = grouped.agg(n_runs=("run_id", "nunique"), r2_mean=("r2_linear", "mean"))
    for c in cols:
        out[f"{c}_mean"] = grouped[c].mean()
        out[f"{c}_sd"] = grouped[c].std(ddof=1)
    return out.reset_index()


def _shift_lines(full: pd.DataFrame, energy: float) -> list[str]:
    """Bullets on the full-FT task shifts: decay, linearity, plain vs weighted energy rank."""
    if full.empty:
        return ["- No full fine-tuning run of this profile is in the store yet: no task shift to measure."]
    per = full.groupby("dataset").agg(alpha=("alpha", "median"), r2=("r2_linear", "median"), n=("run_id", "nunique"))
    ew, ep = f"erank_w{_pct(energy)}", f"erank{_pct(energy)}"
    return [
        "- Median decay exponent α of the plain spectrum: " + ", ".join(
            f"{k} {row['alpha']:.2f} (n={_runs(row['n'])})" for k, row in per.iterrows())
        + f"; α > 1/2 (the theory's condition for a decaying tail) on {int((full['alpha'] > 0.5).sum())}/{len(full)} blocks.",
        "- A linear map explains a median " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in per["r2"].items())
        + f" of a block's shift (R²); the nonlinear residual 1 − R² (median {100 * full['nonlinear_share'].median():.0f}%"
        " over blocks) is out of reach of a linear map of any rank.",
        f"- {_pct(energy)}% of the energy needs a median rank {full[ep].median():g} on the plain spectrum of M and "
        f"{full[ew].median():g} on the data-weighted spectrum of M Σ_h^(1/2) (n={len(full)} blocks × runs).",
    ]


def _map_lines(maps: pd.DataFrame, energy: float, keep: float, probe_rank: int) -> list[str]:
    """Bullets on the trained adapters' maps: directions used, and whether they have decayed by ``probe_rank``."""
    col, ew = f"tail_w_share_r{probe_rank}", f"erank_w{_pct(energy)}"
    lines = []
    for kind, part in maps.groupby("kind", sort=False):
        ranks = sorted({int(r) for r in part["adapter_rank"].dropna()}) if "adapter_rank" in part else []
        of_rank = f" of rank {'/'.join(map(str, ranks))}" if ranks else ""
        line = (f"- {kind}{of_rank} (n={_runs(part['run_id'].nunique())} × {part['block'].nunique()} blocks): median "
                f"{_pct(energy)}%-energy rank {part[ew].median():g} (data-weighted)")
        if col in part:
            kept = 1 - part[col].median()
            line += (f"; a rank-{probe_rank} map keeps a median {100 * kept:.2f}% of its weighted energy, so its spectrum "
                     + ("has" if kept >= keep else "has not") + f" decayed by r={probe_rank} (criterion: ≥ {100 * keep:g}%)")
        lines.append(line + ".")
    return lines


def verdict(summary: pd.DataFrame, predicted: PredictedElbow | None = None, measured: MeasuredElbow | None = None,
            grid: Sequence[int] | None = None, energy: float = 0.9, probe_rank: int = 16) -> str:
    """Markdown: decay and linearity of the task shifts, how many directions the trained adapters use, the
    predicted range and the measured elbow, and the computed agrees / disagrees / inconclusive with its rule.

    ``summary``: per-block rows of :func:`spectra_table` with ``kind``, ``dataset`` and ``run_id`` columns (full-FT
    shifts and adapter maps, as :func:`adaptertune.paper.shifts.analyse_runs` returns them); every number in the
    text is computed here from it and from the two elbows.
    """
    kinds = summary["kind"] if "kind" in summary else pd.Series(KIND_FULL, index=summary.index)
    keep = float(predicted.table["energy"].max()) if predicted is not None and len(predicted.table) else energy
    lines = _shift_lines(summary[kinds == KIND_FULL], energy)
    lines += _map_lines(summary[kinds != KIND_FULL], energy, keep, probe_rank)
    if predicted is not None and predicted.low is not None:
        es = ", ".join(f"{e:g}" for e in predicted.table["energy"])
        lines.append(f"- Predicted elbow: {predicted.span} (for each e = {es}: the smallest grid rank holding e of the "
                     f"weighted energy, pooled over {predicted.n_blocks} blocks × runs of {_runs(predicted.n_runs)} of "
                     "full fine-tuning).")
    if measured is not None:
        rule = ("smallest rank whose mean accuracy is not significantly below the best rank's; paired t over seeds, "
                f"{100 * measured.level:g}% interval of the difference")
        result = measured.reason if measured.testable else f"untestable — {measured.reason}"
        lines.append(f"- Measured elbow ({rule}): {result}.")
    if predicted is not None and measured is not None and grid is not None:
        label, rule = elbow_agreement(predicted, measured, grid)
        lines.append(f"- **Theory vs measurement: {label}** — {rule}.")
    return "\n".join(lines)


# -- the bound on a synthetic linear shift ----------------------------------------------------------------
def synthetic_shift(dim: int = 64, alpha: float = 1.0, c: float = 1.0, n: int = 4096, radius: float = 1.0,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A known shift ``Δ(h) = M h`` with σ_i = c i^(−α) and inputs h with ‖h‖ ≤ ``radius``; returns (M, H, D)."""
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    V, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    sigmas = c * np.arange(1, dim + 1, dtype=np.float64) ** (-alpha)
    M = (U * sigmas) @ V.T
    H = rng.standard_normal((n, dim))
    H *= (radius * rng.uniform(0, 1, size=(n, 1)) ** (1 / dim)) / np.linalg.norm(H, axis=1, keepdims=True)
    return M, H, H @ M.T


def synthetic_check(dim: int, ranks, alpha: float = 1.0, n: int = 4096, seed: int = 0) -> dict:
    """Everything known on a synthetic shift with σ_i = i^(−α), ‖h‖ ≤ 1: the bound per rank (``bound``), the decay
    exponent the fit recovers (``alpha_hat``) and how far the least-squares map is from the truth (``max_abs_error``)."""
    M, H, D = synthetic_shift(dim=dim, alpha=alpha, n=n, radius=1.0, seed=seed)
    fit = estimate_shift(H, D)
    alpha_hat, _ = fit_decay(fit.singular_values)
    return {"bound": bound_check(M, H, ranks), "alpha_hat": alpha_hat, "max_abs_error": float(abs(fit.M - M).max()),
            "n": n, "dim": dim}


def bound_check(M: np.ndarray, H: np.ndarray, ranks, B: float | None = None) -> pd.DataFrame:
    """Per rank: the mean squared error of the best rank-r linear adapter on H vs ``B² Σ_{i>r} σ_i²``.

    ``B`` defaults to ``max ‖h‖`` (the theorem's assumption). A smaller B breaks the assumption and the
    bound can fail; the ``holds`` column says where.
    """
    H = np.asarray(H, dtype=np.float64)
    B = float(np.linalg.norm(H, axis=1).max()) if B is None else float(B)
    sigmas = np.linalg.svd(M, compute_uv=False)
    rows = []
    for r, tail in zip(ranks, tail_error(sigmas, ranks)):
        err = ((H @ (M - truncate(M, int(r))).T) ** 2).sum(1).mean()
        bound = B ** 2 * tail ** 2
        rows.append({"rank": int(r), "mse": float(err), "bound": float(bound), "holds": bool(err <= bound * (1 + 1e-9) + 1e-15),
                     "B": B})
    return pd.DataFrame(rows)


__all__ = ["KINDS", "KIND_ADAPTER", "KIND_FULL", "KIND_LINEARISED", "ShiftFit", "block_overview", "bound_check",
           "energy_rank", "estimate_shift", "estimation_term", "fit_decay", "kind_overview", "linear_map", "spectra_table",
           "synthetic_check", "synthetic_shift", "tail_curves", "tail_error", "tail_share", "truncate", "verdict",
           "weighted_singular_values"]
