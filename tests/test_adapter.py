import pytest
import torch

from adaptertune import Adapter, AdapterConfig
from adaptertune.adapter import grouped_residual


def test_zero_init_branch_is_exactly_zero():
    adapter = Adapter(32, rank=4)
    h = torch.randn(3, 7, 32) * 100
    out = adapter(h)
    assert out.shape == h.shape
    assert torch.equal(out, torch.zeros_like(h))
    assert torch.equal(adapter.up.weight, torch.zeros(32, 4)) and torch.equal(adapter.up.bias, torch.zeros(32))
    assert torch.equal(adapter.down.bias, torch.zeros(4))
    bound = (6 / (32 + 4)) ** 0.5  # Xavier-uniform
    assert adapter.down.weight.abs().max() <= bound and adapter.down.weight.abs().max() > 0


def test_random_init_is_small_and_nonzero():
    torch.manual_seed(0)
    adapter = Adapter(256, rank=16, init="random", init_std=1e-4)
    std = adapter.up.weight.std().item()
    assert 0.5e-4 < std < 2e-4
    assert adapter(torch.randn(2, 5, 256)).abs().max() > 0


def test_scale_multiplies_branch():
    torch.manual_seed(0)
    a1 = Adapter(16, rank=2, init="random", scale=1.0)
    a3 = Adapter(16, rank=2, init="random", scale=3.0)
    a3.load_state_dict(a1.state_dict())
    h = torch.randn(4, 16)
    torch.testing.assert_close(a3(h), 3 * a1(h))


def test_formula_matches_module():
    for d, r in [(384, 16), (768, 1), (192, 64)]:
        assert sum(p.numel() for p in Adapter(d, r).parameters()) == Adapter.num_parameters(d, r) == 2 * d * r + r + d


@pytest.mark.parametrize("kwargs, word", [
    ({"rank": 0}, "rank=0"), ({"rank": -3}, "rank=-3"), ({"every": 0}, "every=0"), ({"init": "kaiming"}, "init='kaiming'"),
    ({"scale": float("nan")}, "scale=nan"), ({"start": -1}, "start=-1"), ({"rank": 2.5}, "rank=2.5"),
])
def test_config_errors_name_the_value(kwargs, word):
    with pytest.raises(ValueError, match=word.replace("(", r"\(").replace(".", r"\.")):
        AdapterConfig(**kwargs)


def test_adapted_blocks():
    assert AdapterConfig(every=1).adapted_blocks(12) == list(range(12))
    assert AdapterConfig(every=2).adapted_blocks(12) == [0, 2, 4, 6, 8, 10]
    assert AdapterConfig(every=5).adapted_blocks(12) == [0, 5, 10]
    assert AdapterConfig(start=6, every=2).adapted_blocks(12) == [6, 8, 10]
    with pytest.raises(ValueError, match="start=12"):
        AdapterConfig(start=12).adapted_blocks(12)


def test_rank_above_width_rejected():
    with pytest.raises(ValueError, match="rank=33"):
        Adapter(32, rank=33)


def test_grouped_residual_equals_each_adapters_own_forward():
    """Many adapters of one rank in one batched product: each row as its own adapter computes it (within fp32
    rounding), scales per adapter included; adapters of different ranks are refused."""
    torch.manual_seed(0)
    adapters = [Adapter(32, rank=4, init="random", init_std=0.1, scale=s) for s in (1.0, 0.5, 2.0)]
    h = torch.randn(7, 5, 32)
    which = torch.tensor([2, 0, 0, 1, 2, 1, 0])
    got = grouped_residual(adapters, h, which)
    want = torch.stack([adapters[k](h[b]) for b, k in enumerate(which.tolist())])
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
    same = [Adapter(32, rank=4, init="random", init_std=0.1) for _ in range(2)]
    torch.testing.assert_close(grouped_residual(same, h[:2], torch.tensor([1, 0])),
                               torch.stack([same[1](h[0]), same[0](h[1])]), rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match=r"one width and rank, got \[\(32, 4\), \(32, 8\)\]"):
        grouped_residual([adapters[0], Adapter(32, rank=8)], h, which)
    with pytest.raises(ValueError, match="one adapter index per row"):
        grouped_residual(adapters, h, which[:3])
