"""Theory helpers against cases where the answer is known in closed form: the shift fit and its spectra (plain and
data-weighted), the adapter's measured residual and linearisation, the elbow rules and the verdict."""
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from adaptertune.adapter import Adapter
from adaptertune.backbones import MINI_BACKBONES
from adaptertune.inject import adapter_modules, add_adapters
from adaptertune.paper import elbow, shifts, theory


def test_least_squares_recovers_a_known_linear_map():
    rng = np.random.default_rng(0)
    M = rng.standard_normal((16, 16))
    b = rng.standard_normal(16)
    H = rng.standard_normal((2000, 16))
    fit = theory.estimate_shift(H, H @ M.T + b)
    np.testing.assert_allclose(fit.M, M, atol=1e-9)
    np.testing.assert_allclose(fit.b, b, atol=1e-9)
    assert fit.r2 == pytest.approx(1.0)


def test_least_squares_r2_drops_for_a_nonlinear_shift():
    rng = np.random.default_rng(1)
    H = rng.standard_normal((3000, 8))
    fit = theory.estimate_shift(H, np.tanh(3 * H) ** 2)  # even function: no linear part at all
    assert fit.r2 < 0.05


def test_estimate_shift_rejects_bad_shapes():
    with pytest.raises(ValueError, match="equal shape"):
        theory.estimate_shift(np.zeros((10, 3)), np.zeros((10, 4)))
    with pytest.raises(ValueError, match="n >= d"):
        theory.estimate_shift(np.zeros((3, 8)), np.zeros((3, 8)))


def test_tail_error_equals_eckart_young_value():
    rng = np.random.default_rng(2)
    M = rng.standard_normal((12, 12))
    s = np.linalg.svd(M, compute_uv=False)
    ranks = [0, 1, 3, 6, 12, 20]
    tails = theory.tail_error(s, ranks)
    for r, t in zip(ranks, tails):
        assert t == pytest.approx(np.sqrt((s[r:] ** 2).sum()))
        assert t == pytest.approx(np.linalg.norm(M - theory.truncate(M, min(r, 12)), "fro"))
    assert tails[-1] == 0.0 and tails[0] == pytest.approx(np.linalg.norm(M, "fro"))


def test_truncated_svd_beats_a_random_rank_r_map():
    rng = np.random.default_rng(3)
    M = rng.standard_normal((10, 10))
    best = np.linalg.norm(M - theory.truncate(M, 3), "fro")
    for _ in range(20):
        other = rng.standard_normal((10, 3)) @ rng.standard_normal((3, 10))
        assert np.linalg.norm(M - other, "fro") >= best


@pytest.mark.parametrize("alpha", [0.6, 1.0, 1.7])
def test_decay_fit_recovers_a_known_exponent(alpha):
    sigmas = 3.0 * np.arange(1, 65, dtype=float) ** (-alpha)
    a, c = theory.fit_decay(sigmas)
    assert a == pytest.approx(alpha, abs=1e-9) and c == pytest.approx(3.0)
    noisy = sigmas * np.exp(np.random.default_rng(4).normal(0, 0.05, 64))
    assert theory.fit_decay(noisy)[0] == pytest.approx(alpha, abs=0.05)


def test_decay_fit_of_an_estimated_spectrum_with_top():
    M, H, D = theory.synthetic_shift(dim=32, alpha=1.2, n=5000, seed=5)
    D = D + np.random.default_rng(5).normal(0, 1e-3, D.shape)
    s = theory.estimate_shift(H, D).singular_values
    assert theory.fit_decay(s, top=16)[0] == pytest.approx(1.2, abs=0.1)


def test_energy_rank():
    assert theory.energy_rank([1.0, 0, 0], 0.9) == 1
    assert theory.energy_rank([1.0, 1.0, 1.0, 1.0], 0.5) == 2
    assert theory.energy_rank([1.0, 1.0, 1.0, 1.0], 1.0) == 4
    with pytest.raises(ValueError, match="energy"):
        theory.energy_rank([1.0], 1.5)


def test_bound_holds_on_the_synthetic_shift():
    M, H, D = theory.synthetic_shift(dim=32, alpha=0.8, n=4000, radius=2.0, seed=6)
    np.testing.assert_allclose(D, H @ M.T)
    assert np.linalg.norm(H, axis=1).max() <= 2.0 + 1e-12
    table = theory.bound_check(M, H, ranks=[1, 2, 4, 8, 16, 32])
    assert table["holds"].all()
    assert table["mse"].is_monotonic_decreasing and table["bound"].is_monotonic_decreasing
    assert table.loc[table["rank"] == 32, "mse"].item() == pytest.approx(0.0, abs=1e-20)


def test_bound_is_tight_and_fails_where_its_assumption_fails():
    """Inputs along the first discarded direction v_{r+1} of a steep spectrum nearly meet the bound; with B
    below ‖h‖ (inputs outside the ball the theorem assumes) it is violated."""
    M, _, _ = theory.synthetic_shift(dim=16, alpha=3.0, n=10, seed=7)
    v3 = np.linalg.svd(M)[2][2]  # third right singular vector, ‖v3‖ = 1
    H = np.stack([v3, -v3])
    ok = theory.bound_check(M, H, ranks=[2]).iloc[0]
    assert ok["holds"]
    assert ok["B"] == pytest.approx(1.0)
    assert ok["mse"] / ok["bound"] > 0.75
    bad = theory.bound_check(M, H, ranks=[2], B=0.8).iloc[0]
    assert not bad["holds"]
    # a rank below the shift's rank never reaches zero error: a high-rank shift is not captured
    M, H, _ = theory.synthetic_shift(dim=16, alpha=0.0, n=2000, seed=7)  # flat spectrum
    assert (theory.bound_check(M, H, ranks=[2, 8])["mse"] > 1e-3).all()


def _twins(seed: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    """A random mini-s (seeded) and an independent copy of its weights."""
    spec = MINI_BACKBONES["mini-s"]
    torch.manual_seed(seed)
    pre, copy = spec.build(5), spec.build(5)
    copy.load_state_dict(pre.state_dict())
    return pre, copy


def test_block_shifts_per_block_and_zero_for_identical_models():
    spec = MINI_BACKBONES["mini-s"]
    pre, ft = _twins(seed=0)
    images = torch.randn(6, 1, 28, 28)
    pairs = shifts.block_shifts(pre, ft, images, batch_size=4)
    assert len(pairs) == spec.depth
    tokens = 6 * (1 + (28 // spec.patch_size) ** 2)
    for H, D in pairs:
        assert H.shape == (tokens, spec.embed_dim) and np.abs(D).max() == 0.0
    with torch.no_grad():  # change only block 2: only block 2 shifts (same inputs, blocks independent)
        ft.blocks[2].mlp.fc2.bias.add_(0.1)
    pairs = shifts.block_shifts(pre, ft, images, max_tokens=50)
    assert [np.abs(D).max() > 0 for _, D in pairs] == [i == 2 for i in range(spec.depth)]
    assert pairs[0][0].shape == (50, spec.embed_dim)


def test_spectra_and_tail_tables():
    M, H, D = theory.synthetic_shift(dim=16, alpha=1.0, n=500, seed=8)
    fits = [theory.estimate_shift(H, D), theory.estimate_shift(H, 2 * D)]
    spectrum, summary = theory.spectra_table(fits, ranks=(1, 4, 16), energies=(0.5, 0.9))
    assert len(spectrum) == 32 and list(summary["block"]) == [0, 1]
    np.testing.assert_allclose(summary["alpha"], 1.0, atol=1e-6)
    assert (summary["tail_w_share_r16"] < 1e-12).all() and (summary["tail_w_share_r1"] > 0.1).all()
    assert {"erank50", "erank90", "erank_w50", "erank_w90"} <= set(summary.columns)
    np.testing.assert_allclose(summary["nonlinear_share"], 0.0, atol=1e-9)  # a purely linear shift
    np.testing.assert_allclose(spectrum.groupby("block")["cum_w_share"].last(), 1.0)
    tails = theory.tail_curves(fits, [1, 4, 16])
    assert len(tails) == 6 and tails.groupby("block")["tail_share"].apply(lambda s: s.is_monotonic_decreasing).all()
    np.testing.assert_allclose(tails.loc[tails["rank"] == 16, ["tail_share", "tail_w_share", "lost_share"]], 0.0, atol=1e-12)
    assert theory.estimation_term([1, 4], dim=16, depth=4, n=64).tolist() == [1.0, 2.0]


# -- the data-weighted spectrum ------------------------------------------------------------------------------
def test_weighted_spectrum_sees_only_the_directions_the_data_uses():
    """A full-rank M whose inputs live in a k-dim subspace: the plain spectrum is flat, the weighted one has rank k
    and equals the singular values of M Σ_h^{1/2} (Σ_h^{1/2} by eigendecomposition)."""
    rng = np.random.default_rng(10)
    d, k, n = 12, 3, 4000
    M = np.linalg.qr(rng.standard_normal((d, d)))[0] * 2.0  # orthogonal × 2: every σ_i(M) = 2
    basis = np.linalg.qr(rng.standard_normal((d, k)))[0]
    H = rng.standard_normal((n, k)) @ np.diag([3.0, 1.0, 0.5]) @ basis.T + rng.standard_normal(d)  # offset: intercept
    vals, vecs = np.linalg.eigh(np.cov(H.T, bias=True))
    sqrt_sigma = (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T
    tau = theory.weighted_singular_values(M, H)
    np.testing.assert_allclose(tau, np.linalg.svd(M @ sqrt_sigma, compute_uv=False), atol=1e-7)
    np.testing.assert_allclose(np.linalg.svd(M, compute_uv=False), 2.0)
    assert (tau[k:] < 1e-9).all() and (tau[:k] > 0.5).all()
    assert theory.energy_rank(tau, 1.0) == k and theory.tail_share(tau, [k]).item() == pytest.approx(0.0, abs=1e-18)
    with pytest.raises(ValueError, match="do not fit"):
        theory.weighted_singular_values(M[:, :5], H)


def test_weighted_tail_is_the_error_of_the_best_rank_r_affine_map():
    """For a least-squares fit Σ τ² = R² · Var(D), and the best rank-r affine map (reduced-rank regression) misses
    exactly the nonlinear residual plus the weighted tail: (1 − R²) Var(D) + Σ_{i>r} τ_i²."""
    rng = np.random.default_rng(11)
    n, d = 3000, 10
    H = rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) + 1.0
    D = H @ rng.standard_normal((d, d)).T * 0.3 + np.sin(H) + 0.5
    fit = theory.estimate_shift(H, D)
    assert (fit.weighted ** 2).sum() == pytest.approx(fit.r2 * fit.total_var, rel=1e-9)
    assert 0 < fit.r2 < 1
    centred = H - H.mean(0)
    _, _, Vt = np.linalg.svd(centred @ fit.M.T, full_matrices=False)
    for r in (0, 1, 3, 7, 10):
        A = Vt[:r].T @ Vt[:r] @ fit.M  # rank r: projects M's outputs on the top-r directions of the fitted shift
        err = ((D - D.mean(0) - centred @ A.T) ** 2).sum(1).mean()
        expected = (1 - fit.r2) * fit.total_var + theory.tail_error(fit.weighted, [r]).item() ** 2
        assert err == pytest.approx(expected, rel=1e-9)


def test_linear_map_reads_a_given_map_without_a_fit():
    rng = np.random.default_rng(12)
    M, H = rng.standard_normal((6, 6)), rng.standard_normal((500, 6))
    mapped = theory.linear_map(M, H)
    assert np.isnan(mapped.r2) and np.array_equal(mapped.M, M)
    np.testing.assert_allclose(mapped.weighted, theory.weighted_singular_values(M, H))
    assert mapped.total_var == pytest.approx((mapped.weighted ** 2).sum())


# -- the trained adapter's map ---------------------------------------------------------------------------------
def test_adapter_linearisation_is_the_jacobian_at_zero():
    torch.manual_seed(13)
    adapter = Adapter(8, rank=3, scale=2.0, init="random", init_std=0.5)
    with torch.no_grad():
        adapter.down.bias.zero_()
    W_up, W_down = adapter.up.weight.detach().double(), adapter.down.weight.detach().double()
    expected = (2.0 * 0.5 * W_up @ W_down).numpy()  # GELU'(0) = 1/2
    np.testing.assert_allclose(shifts.adapter_linearisation(adapter), expected, atol=1e-7)
    with torch.no_grad():
        adapter.down.bias.normal_()
    J = torch.autograd.functional.jacobian(adapter, torch.zeros(8)).double().numpy()
    lin = shifts.adapter_linearisation(adapter)
    np.testing.assert_allclose(lin, J, atol=1e-5)
    assert np.linalg.matrix_rank(lin) <= 3
    assert adapter(torch.zeros(2, 8)).dtype == torch.float32  # the adapter itself is left as it was


def test_block_shifts_of_an_adapted_model_are_its_residuals():
    pre, adapted = _twins(seed=14)
    add_adapters(adapted, rank=4, every=2, init="random", init_std=0.05)
    pairs = shifts.block_shifts(pre, adapted, torch.randn(3, 1, 28, 28))
    adapters = adapter_modules(adapted)
    assert sorted(adapters) == [0, 2, 4]
    for block, (H, D) in enumerate(pairs):
        if block in adapters:
            with torch.no_grad():
                expected = adapters[block](torch.from_numpy(H).float()).double().numpy()
            np.testing.assert_allclose(D, expected, atol=1e-5)
            assert np.abs(D).max() > 0
        else:
            assert np.abs(D).max() == 0.0


# -- kinds of map ------------------------------------------------------------------------------------------------
def _summary(kind: str, runs: int, erank: list[int]) -> pd.DataFrame:
    return pd.DataFrame([{"kind": kind, "run_id": f"{kind}{r}", "block": b, "r2_linear": 0.9, "erank_w90": e,
                          "dataset": "x"} for r in range(runs) for b, e in enumerate(erank)])


def test_kind_overview_counts_runs_and_spreads():
    summary = pd.concat([_summary(theory.KIND_FULL, 3, [4, 6]), _summary(theory.KIND_ADAPTER, 2, [2, 2])],
                        ignore_index=True)
    summary.loc[(summary["kind"] == theory.KIND_FULL) & (summary["block"] == 0), "erank_w90"] = [3, 4, 5]
    table = theory.kind_overview(summary, energies=(0.9,)).set_index(["kind", "block"])
    assert table.loc[(theory.KIND_FULL, 0), "n_runs"] == 3 and table.loc[(theory.KIND_ADAPTER, 1), "n_runs"] == 2
    assert table.loc[(theory.KIND_FULL, 0), "erank_w90_mean"] == 4 and table.loc[(theory.KIND_FULL, 0), "erank_w90_sd"] == 1
    assert table.loc[(theory.KIND_ADAPTER, 1), "erank_w90_sd"] == 0
    assert theory.kind_overview(summary.iloc[:0], energies=(0.9,)).empty


# -- the elbow -------------------------------------------------------------------------------------------------
def test_the_elbow_uses_the_paired_t_interval_of_stats():
    from adaptertune.paper import stats as at_stats

    a = pd.Series([80.0, 83.0, 81.5, 84.0], index=[0, 1, 2, 3])
    b = pd.Series([79.0, 82.5, 80.0, 83.1], index=[0, 1, 2, 3])
    got = at_stats.difference(a, b, level=0.9)
    ref = stats.ttest_rel(a, b).confidence_interval(0.9)
    assert got.n == 4 and (got.low, got.high) == (pytest.approx(ref.low), pytest.approx(ref.high))
    with pytest.raises(ValueError, match="level"):
        at_stats.mean_interval([1.0, 2.0], level=95)


def _rank_runs(means: dict[int, float], seeds=(0, 1, 2), noise=0.05) -> pd.DataFrame:
    """Accuracy (a fraction, as in the store) = mean[r] + a large per-seed effect shared by every rank + a small
    rank-specific wobble."""
    effect, wobble = {0: 0.0, 1: 3.0, 2: -2.0}, {0: noise, 1: -noise, 2: 0.0}
    return pd.DataFrame([{"method": "adapter", "rank": r, "seed": s,
                          "test_acc": (m + effect[s] + wobble[s] * (1 + i % 2)) / 100}
                         for i, (r, m) in enumerate(means.items()) for s in seeds])


def test_measured_elbow_finds_a_plateau_with_a_paired_test():
    grid = [1, 2, 4, 8, 16, 32]
    runs = _rank_runs({1: 70, 2: 75, 4: 78, 8: 80, 16: 80.02, 32: 80.01})
    found = elbow.measured_elbow(runs, grid)
    assert found.testable and not found.edge and found.rank == 8 and found.elbow == 8
    table = found.table.set_index("rank")
    assert table.loc[4, "below_best"] and not table.loc[8, "below_best"] and table.loc[16, "diff_points"] == 0
    assert (table["n"] == 3).all() and (table["n_pairs"] == 3).all()
    # the shared seed effect (±3 points) swamps an unpaired comparison of r=4 (2 points lower); pairing does not
    assert stats.ttest_ind(runs.query("rank == 4")["test_acc"], runs.query("rank == 16")["test_acc"]).pvalue > 0.05


def test_the_measured_elbow_is_a_span_when_a_rank_is_neither_excluded_nor_equivalent():
    grid = [1, 2, 4, 8, 16, 32]
    # r=8 sits 1 point below the plateau on average, with seed noise that neither excludes it nor shows it equivalent
    per_seed = {1: [60] * 3, 2: [65] * 3, 4: [70] * 3, 8: [78.0, 80.5, 80.0], 16: [80.5] * 3, 32: [80.4] * 3}
    runs = pd.DataFrame([{"method": "adapter", "rank": r, "seed": s, "test_acc": acc[s] / 100}
                         for r, acc in per_seed.items() for s in range(3)])
    found = elbow.measured_elbow(runs, grid)
    assert found.rank == 16 and found.low == 8 and found.span == (8, 16) and "r=8–16" in found.reason
    clear = elbow.measured_elbow(_rank_runs({1: 60, 2: 65, 4: 70, 8: 80, 16: 80.02, 32: 80.01}), grid)
    assert clear.span == (8, 8)


def test_measured_elbow_refuses_the_grid_edge():
    grid = [1, 2, 4, 8]
    found = elbow.measured_elbow(_rank_runs({1: 70, 2: 74, 4: 77, 8: 79}), grid)
    assert found.testable and found.edge and found.rank == 8 and found.elbow is None
    assert "no elbow within the grid" in found.reason


def test_measured_elbow_is_untestable_without_seeds_or_ranks():
    grid = [1, 2, 4]
    one_seed = elbow.measured_elbow(_rank_runs({1: 70, 2: 74, 4: 77}, seeds=(0,)), grid)
    assert not one_seed.testable and one_seed.rank is None and "a paired test needs at least 2" in one_seed.reason
    thin = _rank_runs({1: 70, 2: 74, 4: 77}).query("not (rank == 2 and seed > 0)")
    assert "ranks [2] share fewer than 2 seeds" in elbow.measured_elbow(thin, grid).reason
    missing = elbow.measured_elbow(_rank_runs({1: 70, 2: 74}), grid)
    assert not missing.testable and "[4]" in missing.reason
    empty = elbow.measured_elbow(_rank_runs({}), grid)
    assert not empty.testable and empty.table.empty
    off_grid = _rank_runs({1: 70, 2: 74, 4: 77, 64: 99})  # a rank outside the grid is ignored, not the best
    assert elbow.measured_elbow(off_grid, grid).edge


def _fit(weighted_sq: list[float], r2: float = 1.0) -> theory.ShiftFit:
    w = np.sqrt(np.asarray(weighted_sq, dtype=float))
    return theory.ShiftFit(M=np.diag(w), b=np.zeros(len(w)), r2=r2, weighted=w, total_var=float(w @ w) / r2)


def test_predicted_elbow_is_a_range_over_thresholds():
    grid = [1, 2, 4, 8]
    tails = theory.tail_curves([_fit([0.5, 0.3, 0.1, 0.05, 0.03, 0.02, 0, 0])], grid).assign(run_id="a")
    # captured weighted energy at r = 1, 2, 4, 8: 0.5, 0.8, 0.95, 1.0
    pred = elbow.predicted_elbow(tails, grid, energies=(0.5, 0.8, 0.9, 0.95))
    assert pred.table["rank_weighted"].tolist() == [1, 2, 4, 4]
    assert (pred.low, pred.high, pred.beyond, pred.n_runs, pred.n_blocks) == (1, 4, False, 1, 1)
    beyond = elbow.predicted_elbow(tails, [1, 2], energies=(0.8, 0.95))
    assert beyond.table["rank_weighted"].isna().tolist() == [False, True] and beyond.beyond and beyond.high is None
    assert beyond.low == 2
    empty = elbow.predicted_elbow(tails.iloc[:0], grid)
    assert empty.low is None and empty.high is None
    with pytest.raises(ValueError, match="energy"):
        elbow.predicted_elbow(tails, grid, energies=(0.9, 1.2))


def test_predicted_elbow_pools_energy_over_blocks():
    """A large block with a flat spectrum outweighs a small steep one: pooled, not averaged per block."""
    grid = [1, 2, 4]
    big, small = _fit([25, 25, 25, 25]), _fit([0.99, 0.01, 0, 0])
    tails = theory.tail_curves([big, small], grid).assign(run_id="a")
    pooled = elbow.predicted_elbow(tails, grid, energies=(0.6,))
    # pooled captured at r=1, 2: 26/101, 51/101 < 0.6 -> r=4; the mean of the per-block shares at r=1 is
    # (0.25 + 0.99) / 2 = 0.62 -> r=1 (the plain column averages shares: the spectra have no common scale)
    assert pooled.table["rank_weighted"].tolist() == [4] and pooled.table["rank_plain"].tolist() == [1]
    assert pooled.n_blocks == 2
    with pytest.raises(ValueError, match="several kinds"):
        elbow.predicted_elbow(tails.assign(kind=["a", "b"] * 3), grid)


def _measured(rank, edge=False, testable=True, low=None) -> elbow.MeasuredElbow:
    return elbow.MeasuredElbow(pd.DataFrame(), rank, edge, testable, 0.95, "why", low)


def _predicted(low, high, beyond=False) -> elbow.PredictedElbow:
    return elbow.PredictedElbow(pd.DataFrame({"energy": [0.8, 0.95]}), low, high, beyond, 1, 6)


@pytest.mark.parametrize("predicted, measured, expected", [
    ((4, 8), (8, False, True), "agrees"),
    ((4, 8), (16, False, True), "disagrees"),
    ((4, 8), (2, False, True), "disagrees"),
    ((4, 8), (64, True, True), "disagrees"),         # no elbow within the grid vs a range inside it
    ((16, 64), (64, True, True), "agrees"),          # the range reaches the edge
    ((16, None, True), (64, True, True), "agrees"),  # beyond the grid
    ((16, None, True), (32, False, True), "agrees"),
    ((None, None), (8, False, True), "inconclusive"),
    ((4, 8), (None, False, False), "inconclusive"),
    ((4, 8), (16, False, True, 8), "inconclusive"),  # the elbow may be 8 (inside) or 16 (outside): cannot tell
    ((4, 8), (8, False, True, 4), "agrees"),         # 4 or 8: inside either way
    ((4, 8), (32, False, True, 16), "disagrees"),    # 16 or 32: outside either way
])
def test_elbow_agreement(predicted, measured, expected):
    label, rule = elbow.elbow_agreement(_predicted(*predicted), _measured(*measured), [1, 2, 4, 8, 16, 32, 64])
    assert label == expected and label in elbow.VERDICTS and rule


def test_predicted_span_reads_as_a_range():
    assert (_predicted(4, 8).span, _predicted(8, 8).span, _predicted(16, None, True).span, _predicted(None, None).span) == \
        ("r=4–8", "r=8", "r=16 to beyond the grid", "none")


def test_verdict_states_the_computed_decision():
    summary = pd.concat([_summary(theory.KIND_FULL, 2, [5, 6]), _summary(theory.KIND_ADAPTER, 1, [3, 3])],
                        ignore_index=True).assign(alpha=1.2, nonlinear_share=0.1, erank90=7, tail_w_share_r16=0.001)
    text = theory.verdict(summary, _predicted(4, 8), _measured(64, edge=True), [1, 2, 4, 8, 16, 32, 64], probe_rank=16)
    assert "**Theory vs measurement: disagrees**" in text and "r=4–8" in text
    assert "α > 1/2 (the theory's condition for a decaying tail) on 4/4 blocks" in text
    assert "trained adapter (n=1 run × 2 blocks)" in text and "99.90%" in text and "has decayed by r=16" in text
    ranked = theory.verdict(summary.assign(adapter_rank=64.0), _predicted(8, 8), _measured(8), [1, 8, 64])
    assert "trained adapter of rank 64 (n=1 run × 2 blocks)" in ranked and "Predicted elbow: r=8 (" in ranked
    assert "**Theory vs measurement: agrees**" in ranked
    empty = theory.verdict(summary.iloc[:0], elbow.predicted_elbow(pd.DataFrame(), [1, 2]),
                           elbow.measured_elbow(_rank_runs({}), [1, 2]), [1, 2])
    assert "No full fine-tuning run" in empty and "**Theory vs measurement: inconclusive**" in empty


def test_parse_energies():
    assert elbow.parse_energies("0.9, 0.8 0.95") == (0.8, 0.9, 0.95)
    assert elbow.parse_energies((0.85, 0.8)) == (0.8, 0.85)
    for bad in ("", "0.8, 1.5", (0.0,), (True,)):
        with pytest.raises(ValueError, match="energ"):
            elbow.parse_energies(bad)


def test_measured_elbow_is_an_equivalence_and_the_embedding_width_is_a_stated_edge():
    grid = [1, 2, 4, 8]
    rising = _rank_runs({1: 70, 2: 74, 4: 78.5, 8: 79})  # r=4 within half a point of the best at the edge
    assert elbow.measured_elbow(rising, grid).edge  # the edge is no elbow: accuracy may rise beyond it
    limited = elbow.measured_elbow(rising, grid, limit=8)  # ... unless it is the embedding width
    assert not limited.edge and limited.elbow == 4 and "stated limit r=8" in limited.reason
    equivalent = limited.table.set_index("rank")["equivalent"]
    assert bool(equivalent.loc[4]) and not bool(equivalent.loc[2])
    with pytest.raises(ValueError, match="one pair at a time"):
        elbow.measured_elbow(pd.concat([rising.assign(dataset="a"), rising.assign(dataset="b")]), grid)
