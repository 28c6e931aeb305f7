"""Why adapters are cheap, checked structurally (no timing assertions, so the suite stays stable on a busy CPU).

A frozen backbone must (1) leave every frozen parameter without a gradient, (2) let autograd record nothing
below the first adapted block (no graph node, no saved tensor), (3) give AdamW state for the trainable
tensors only, and (4) compute exactly the bare backbone's function while the adapters are zero-initialised.
The benchmark (benchmarks/bench.py) relies on these; its instruments are tested here too.
"""
from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import adaptertune as at
from adaptertune.inject import transformer_blocks

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmarks/ is a folder of the repository, not an installed package
    sys.path.insert(0, str(ROOT))

from benchmarks.measure import (autograd_audit, make_optimizer, optimizer_state_bytes, step_flops,  # noqa: E402
                                train_step)

DEPTH = 6  # mini-s
CPU = torch.device("cpu")


def mini(method: str, **adapter_options) -> torch.nn.Module:
    torch.manual_seed(0)
    model = at.create_backbone("mini-s", 5, pretrained=False)
    return at.prepare(model, method, **adapter_options).train()


def batch(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(n, 1, 28, 28, generator=gen), torch.randint(0, 5, (n,), generator=gen)


@pytest.mark.parametrize("method,options", [("head", {}), ("adapter", {}), ("adapter", {"every": 2}),
                                            ("adapter", {"start": 3})])
def test_frozen_parameters_get_no_gradient(method, options):
    model = mini(method, **options)
    x, y = batch()
    F.cross_entropy(model(x), y).backward()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable, "nothing trains"
    for name, p in model.named_parameters():
        if name in trainable:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
        else:
            assert p.grad is None, f"frozen {name} received a gradient"
    assert all(n.startswith("head.") or ".adapter." in n for n in trainable)


def _record_block_outputs(model):
    seen: dict[int, tuple[bool, bool, bool]] = {}  # block -> (input requires grad, output requires grad, has grad_fn)
    handles = []
    for i, block in enumerate(transformer_blocks(model)):
        handles.append(block.register_forward_pre_hook(
            lambda m, a, i=i: seen.__setitem__(i, (a[0].requires_grad, False, False))))
        handles.append(block.register_forward_hook(
            lambda m, a, out, i=i: seen.__setitem__(i, (seen[i][0], out.requires_grad, out.grad_fn is not None))))
    return seen, handles


@pytest.mark.parametrize("start", [0, 2, 3, DEPTH - 1])
def test_autograd_records_nothing_below_the_first_adapter(start):
    model = mini("adapter", start=start)
    x, _ = batch()
    seen, handles = _record_block_outputs(model)
    model(x)
    for h in handles:
        h.remove()
    for i in range(DEPTH):
        requires_in, requires_out, has_fn = seen[i]
        if i < start:
            assert not requires_out and not has_fn, f"block {i} < start={start} is part of the autograd graph"
        else:
            assert requires_out and has_fn, f"block {i} >= start={start} should carry the adapters' gradient"
        assert requires_in == (i > start), f"block {i}: its inside is differentiated iff it lies above block {start}"


def test_no_tensor_is_saved_for_backward_below_the_first_adapter():
    """saved_tensors_hooks see every activation autograd keeps: none in blocks < start, only the adapter's in block start."""
    start = 3
    model = mini("adapter", start=start)
    where: list[str] = []
    saved: list[str] = []
    handles = []

    def leave(module, args, output) -> None:  # returns None: a forward hook's return value would replace the output
        where.pop()

    for i, block in enumerate(transformer_blocks(model)):
        handles.append(block.register_forward_pre_hook(lambda m, a, i=i: where.append(f"block{i}")))
        handles.append(block.register_forward_hook(leave))
        if hasattr(block, "adapter"):
            handles.append(block.adapter.register_forward_pre_hook(lambda m, a, i=i: where.append(f"adapter{i}")))
            handles.append(block.adapter.register_forward_hook(leave))
    x, y = batch()
    with torch.autograd.graph.saved_tensors_hooks(lambda t: (saved.append(where[-1] if where else "outside"), t)[1],
                                                  lambda t: t):
        loss = F.cross_entropy(model(x), y)
    for h in handles:
        h.remove()
    assert not [s for s in saved if s in {f"block{i}" for i in range(start + 1)}], saved
    assert f"adapter{start}" in saved and "block4" in saved and "block5" in saved
    loss.backward()  # the graph is complete: backward runs


def test_full_fine_tuning_differentiates_every_block():
    """The same instrument on full fine-tuning: every block's input requires grad (the audit is not vacuous)."""
    x, y = batch(2)
    full = autograd_audit(mini("full"), x, y)
    adapter = autograd_audit(mini("adapter", start=3), x, y)
    head = autograd_audit(mini("head"), x, y)
    assert full.first_differentiated_block == 0 and full.first_grad_output_block == 0
    assert adapter.first_differentiated_block == 4 and adapter.first_grad_output_block == 3
    assert head.first_differentiated_block is None and head.first_grad_output_block is None
    assert head.saved_bytes < adapter.saved_bytes < full.saved_bytes
    assert head.graph_nodes < adapter.graph_nodes < full.graph_nodes


@pytest.mark.parametrize("method,options", [("full", {}), ("head", {}), ("adapter", {}), ("adapter", {"start": 3})])
def test_adamw_state_is_eight_bytes_per_trainable_parameter(method, options):
    model = mini(method, **options)
    opt = make_optimizer(model, "foreach")
    x, y = batch()
    train_step(model, opt, x, y, "fp32", CPU)
    tensors = [p for p in model.parameters() if p.requires_grad]
    state = optimizer_state_bytes(opt)
    assert state.moments == 2 * 4 * sum(p.numel() for p in tensors)  # exp_avg + exp_avg_sq, fp32
    assert state.counters == 4 * len(tensors)  # one fp32 `step` scalar per tensor


def test_adapter_optimizer_state_is_tiny_next_to_full_fine_tuning():
    counts = {}
    for method in ("full", "adapter"):
        model = at.create_backbone("vit_small_patch16_224", 100, pretrained=False)
        counts[method] = at.count_parameters(at.prepare(model, method)).trainable
    assert counts["adapter"] == 190_756  # PAPER.md, ViT-S on CIFAR-100
    assert 8 * counts["adapter"] < 0.01 * 8 * counts["full"]


@pytest.mark.parametrize("options", [{}, {"every": 2}, {"start": 3}])
def test_zero_initialised_adapters_infer_exactly_like_the_bare_backbone(options):
    torch.manual_seed(0)
    bare = at.create_backbone("mini-s", 5, pretrained=False).eval()
    adapted = at.prepare(copy.deepcopy(bare), "adapter", **options).eval()
    x, _ = batch(16)
    with torch.inference_mode():
        assert torch.equal(adapted(x), bare(x))


def test_step_flops_follow_the_skipped_gradients():
    """full ≈ 3 forward passes; adapters at start 0 skip the weight gradients (≈ 2/3 of full), higher starts more."""
    x, y = batch(2)
    flops = {name: step_flops(mini(method, **opts), x, y) for name, (method, opts) in {
        "full": ("full", {}), "adapter": ("adapter", {}), "half": ("adapter", {"start": 3}), "head": ("head", {}),
    }.items()}
    forward = step_flops(mini("full"), x, y, backward=False)
    assert 2.9 < flops["full"] / forward < 3.1
    assert 1.4 < flops["full"] / flops["adapter"] < 1.7
    assert flops["full"] / flops["half"] > 1.9
    assert 2.9 < flops["full"] / flops["head"] < 3.1
    with torch.utils.flop_counter.FlopCounterMode(display=False) as plain:  # attention counted only via our mapping
        mini("full")(x)
    assert forward > plain.get_total_flops()


def test_compiled_adapter_model_keeps_its_adapters_after_another_model_was_compiled():
    """Dynamo skips guards on module hooks by default: an adapter model compiled after a head-only model of the same
    backbone reused the head graph and silently ran without adapters. The benchmark times the training loop's
    CompiledForward, which guards on hooks."""
    from benchmarks.measure import Compiled

    x, _ = batch(4)
    head, adapted = mini("head"), mini("adapter")
    with torch.no_grad():
        for block in transformer_blocks(adapted):
            block.adapter.up.weight.normal_()  # non-zero adapters, so dropping them changes the output
    Compiled(head, backend="eager")(x)
    out = Compiled(adapted, backend="eager")(x)
    assert torch.allclose(out, adapted(x), atol=1e-5)
    out.sum().backward()
    assert all(p.grad is not None for n, p in adapted.named_parameters() if ".adapter." in n)
