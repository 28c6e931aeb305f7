"""Theory helpers against cases where the answer is known in closed form."""
import numpy as np
import pytest
import torch

from adaptertune.paper import theory
from adaptertune.backbones import MINI_BACKBONES


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


def test_block_shifts_per_block_and_zero_for_identical_models():
    spec = MINI_BACKBONES["mini-s"]
    torch.manual_seed(0)
    pre = spec.build(5)
    ft = spec.build(5)
    ft.load_state_dict(pre.state_dict())
    images = torch.randn(6, 1, 28, 28)
    pairs = theory.block_shifts(pre, ft, images, batch_size=4)
    assert len(pairs) == spec.depth
    tokens = 6 * (1 + (28 // spec.patch_size) ** 2)
    for H, D in pairs:
        assert H.shape == (tokens, spec.embed_dim) and np.abs(D).max() == 0.0
    with torch.no_grad():  # change only block 2: only block 2 shifts (same inputs, blocks independent)
        ft.blocks[2].mlp.fc2.bias.add_(0.1)
    pairs = theory.block_shifts(pre, ft, images, max_tokens=50)
    assert [np.abs(D).max() > 0 for _, D in pairs] == [i == 2 for i in range(spec.depth)]
    assert pairs[0][0].shape == (50, spec.embed_dim)


def test_spectra_and_tail_tables():
    M, H, D = theory.synthetic_shift(dim=16, alpha=1.0, n=500, seed=8)
    fits = [theory.estimate_shift(H, D), theory.estimate_shift(H, 2 * D)]
    spectrum, summary = theory.spectra_table(fits, ranks=(1, 4, 16))
    assert len(spectrum) == 32 and list(summary["block"]) == [0, 1]
    np.testing.assert_allclose(summary["alpha"], 1.0, atol=1e-6)
    assert (summary["tail_rel_r16"] < 1e-6).all()
    tails = theory.tail_curves(fits, [1, 4, 16])
    assert len(tails) == 6 and tails.groupby("block")["tail_rel"].apply(lambda s: s.is_monotonic_decreasing).all()
    assert theory.estimation_term([1, 4], dim=16, depth=4, n=64).tolist() == [1.0, 2.0]
