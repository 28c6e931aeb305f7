"""Recomputing frozen MLPs: same numbers bit for bit, fewer saved bytes, loud errors where it cannot apply."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import adaptertune as at
from adaptertune import RunConfig, run
from adaptertune.recompute import recompute_frozen_mlps


def adapted(start: int = 0) -> nn.Module:
    torch.manual_seed(0)
    model = at.prepare(at.create_backbone("mini-s", 5, pretrained=False), "adapter", rank=8, start=start)
    with torch.no_grad():  # trained-looking adapters, so the residual branch matters
        for adapter in at.adapter_modules(model).values():
            for p in adapter.parameters():
                p.normal_(std=0.05)
    return model


def step(model: nn.Module) -> tuple[torch.Tensor, dict[str, torch.Tensor], int]:
    """Logits, trainable gradients and the bytes autograd saved for backward on one fixed batch."""
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 1, 28, 28, generator=gen), torch.randint(0, 5, (8,), generator=gen)
    saved = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.append(t.numel() * t.element_size())
        return t

    model.train().zero_grad(set_to_none=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        logits = model(x)
        loss = F.cross_entropy(logits, y)
    loss.backward()
    return logits.detach(), {n: p.grad for n, p in model.named_parameters() if p.requires_grad}, sum(saved)


@pytest.mark.parametrize("start", [0, 3])
def test_recompute_gives_identical_outputs_and_gradients_and_saves_less(start):
    plain = adapted(start)
    lean = copy.deepcopy(plain)
    assert recompute_frozen_mlps(lean) == list(range(start + 1, 6))  # nothing at or below the first adapter is differentiated
    out_a, grads_a, saved_a = step(plain)
    out_b, grads_b, saved_b = step(lean)
    assert torch.equal(out_a, out_b)
    assert grads_a.keys() == grads_b.keys() and all(torch.equal(grads_a[k], grads_b[k]) for k in grads_a)
    assert saved_b < 0.85 * saved_a  # the 4d-wide GELU inputs of the frozen MLPs are no longer kept
    assert lean.state_dict().keys() == plain.state_dict().keys()


@pytest.mark.parametrize("fraction,blocks", [(1.0, [1, 2, 3, 4, 5]), (0.5, [1, 2, 3]), (0.2, [1]), (0.4, [1, 2])])
def test_a_fraction_recomputes_the_lowest_mlps_with_identical_numbers(fraction, blocks):
    plain = adapted()
    lean = copy.deepcopy(plain)
    assert recompute_frozen_mlps(lean, fraction=fraction) == blocks
    out_a, grads_a, saved_a = step(plain)
    out_b, grads_b, saved_b = step(lean)
    assert torch.equal(out_a, out_b) and all(torch.equal(grads_a[k], grads_b[k]) for k in grads_a)
    one = copy.deepcopy(plain)
    recompute_frozen_mlps(one, fraction=0.01)
    per_block = saved_a - step(one)[2]
    assert per_block >= 8 * 17 * 4 * 64 * 4 // 2  # about the 4d-wide GELU input of 8 × 17 tokens (mini-s, d=64)
    assert saved_a - saved_b == len(blocks) * per_block  # memory is linear in the recomputed blocks


def test_recompute_fraction_must_be_in_zero_one():
    for bad in (0, 1.5, -0.5, True, "half"):
        with pytest.raises(ValueError, match="fraction="):
            recompute_frozen_mlps(adapted(), fraction=bad)


def test_recompute_refuses_unadapted_models_and_foreign_mlps():
    with pytest.raises(ValueError, match="needs an adapted model"):
        recompute_frozen_mlps(at.create_backbone("mini-s", 5, pretrained=False))
    model = adapted()
    model.blocks[4].mlp = nn.Identity()
    with pytest.raises(ValueError, match="block 4 has mlp of type Identity"):
        recompute_frozen_mlps(model)


def test_run_with_recompute_has_the_same_run_id_and_metrics(isolated_home):
    base = dict(dataset="digits", backbone="mini-s", method="adapter", pretrained=False, profile="smoke", epochs=1,
                warmup_epochs=0, batch_size=64, limit=200, train_eval_limit=100)
    plain, half, lean = (RunConfig(**base, recompute_frozen_mlp=0), RunConfig(**base),  # the default: half
                         RunConfig(**base, recompute_frozen_mlp=True))
    assert plain.run_id == half.run_id == lean.run_id  # a memory knob, not a different experiment
    a, b, c = (run(cfg, root=isolated_home / name, verbose=False) for name, cfg in (("a", plain), ("b", half), ("c", lean)))
    assert a["metrics"]["test_loss"] == b["metrics"]["test_loss"] == c["metrics"]["test_loss"]
    with pytest.raises(ValueError, match="recompute_frozen_mlp=True is not allowed with method='full'"):
        RunConfig(**{**base, "method": "full"}, recompute_frozen_mlp=True)


def test_adapter_runs_recompute_the_benchmarks_share_by_default():
    from adaptertune.config import RECOMPUTE_DEFAULT

    base = dict(dataset="digits", backbone="mini-s", profile="smoke")
    assert RunConfig(**base, method="adapter").recompute_share == RECOMPUTE_DEFAULT == 0.5
    assert RunConfig(**base, method="full").recompute_share == 0.0 == RunConfig(**base, method="head").recompute_share
    assert RunConfig(**base, method="adapter", recompute_frozen_mlp=False).recompute_share == 0.0  # old stored configs
    assert RunConfig(**base, method="adapter", recompute_frozen_mlp=True).recompute_share == 1.0
    assert RunConfig.from_dict({**base, "method": "adapter", "recompute_frozen_mlp": "0.25"}).recompute_share == 0.25
    with pytest.raises(ValueError, match=r"recompute_frozen_mlp=1.5 is not allowed: use a share in \[0, 1\]"):
        RunConfig(**base, method="adapter", recompute_frozen_mlp=1.5)


def test_the_default_steps_aside_for_an_unsupported_mlp_but_an_explicit_request_fails(monkeypatch):
    from adaptertune.training import run as run_module

    cfg = RunConfig(dataset="digits", backbone="mini-s", method="adapter", pretrained=False, profile="smoke", limit=64)
    monkeypatch.setattr(run_module, "recompute_frozen_mlps", lambda model, share: (_ for _ in ()).throw(
        ValueError("block 1 has mlp of type GluMlp")))
    run_module.build_model_and_data(cfg)  # the default: no error
    with pytest.raises(ValueError, match="GluMlp"):
        run_module.build_model_and_data(cfg.with_(recompute_frozen_mlp=0.5))
