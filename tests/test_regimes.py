import math

import pytest
import timm
import torch

from adaptertune import count_parameters, expected_trainable, prepare
from adaptertune.regimes import head_parameter_names
from tests.test_inject import small_vit

# PAPER.md: backbone parameters without head, and the adapters-only counts at r=16, every=1.
BACKBONES = {"vit_small_patch16_224": (384, 21_665_664, 152_256), "vit_base_patch16_224": (768, 85_798_656, 304_320),
             "deit_tiny_patch16_224": (192, 5_524_416, 76_224)}


@pytest.mark.parametrize("arch", list(BACKBONES))
def test_parameter_counts_match_paper_formula(arch):
    dim, backbone_params, adapters_r16 = BACKBONES[arch]
    for classes in (10, 100):
        for method in ("head", "full"):
            with torch.device("meta"):
                model = timm.create_model(arch, pretrained=False, num_classes=classes)
            prepare(model, method)
            head = dim * classes + classes
            assert count_parameters(model) == (head if method == "head" else backbone_params + head, backbone_params + head)
        for every in (1, 2):
            for rank in (1, 16, 64):
                with torch.device("meta"):
                    model = timm.create_model(arch, pretrained=False, num_classes=classes)
                prepare(model, "adapter", rank=rank, every=every)
                n_adapters = math.ceil(12 / every)
                want = n_adapters * (2 * dim * rank + rank + dim) + dim * classes + classes
                counts = count_parameters(model)
                assert counts.trainable == want == expected_trainable(12, dim, classes, rank=rank, every=every)
                assert counts.total == backbone_params + dim * classes + classes + n_adapters * (2 * dim * rank + rank + dim)
                if rank == 16 and every == 1:
                    assert want - (dim * classes + classes) == adapters_r16
    with torch.device("meta"):
        vit_s = timm.create_model("vit_small_patch16_224", num_classes=100)
    assert count_parameters(prepare(vit_s, "adapter")).trainable == 190_756  # PAPER.md: ViT-S on CIFAR-100


def _step_and_diff(method: str, **options) -> dict[str, bool]:
    model = prepare(small_vit(), method, **options)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.05)
    model.train()
    for _ in range(2):  # two steps: with zero-init W_up, W_down only moves from the second step on
        loss = torch.nn.functional.cross_entropy(model(torch.randn(8, 1, 28, 28)), torch.randint(0, 10, (8,)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {k: not torch.equal(before[k], v) for k, v in model.state_dict().items()}


def test_training_step_changes_only_head_in_head_regime():
    changed = _step_and_diff("head")
    assert {k for k, c in changed.items() if c} == {"head.weight", "head.bias"}


def test_training_step_changes_only_adapters_and_head_in_adapter_regime():
    changed = _step_and_diff("adapter", rank=4, every=2)
    moved = {k for k, c in changed.items() if c}
    adapters = {f"blocks.{i}.adapter.{p}" for i in (0, 2) for p in ("down.weight", "down.bias", "up.weight", "up.bias")}
    assert moved == adapters | {"head.weight", "head.bias"}


def test_training_step_changes_everything_in_full_regime():
    changed = _step_and_diff("full")
    assert all(changed.values())


def test_gradient_reaches_every_adapter():
    model = prepare(small_vit(), "adapter", rank=4)
    loss = torch.nn.functional.cross_entropy(model(torch.randn(8, 1, 28, 28)), torch.randint(0, 10, (8,)))
    loss.backward()
    for name, p in model.named_parameters():
        if ".adapter.up" in name:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        elif ".adapter.down" in name:  # exactly zero at step 0: W_up = 0 blocks the path
            assert p.grad is not None and p.grad.abs().sum() == 0, name
        elif p.requires_grad:
            assert name in head_parameter_names(model)
        else:
            assert p.grad is None, name


def test_prepare_errors():
    with pytest.raises(ValueError, match="method='ssf'"):
        prepare(small_vit(), "ssf")
    with pytest.raises(ValueError, match="do not apply to method='head'"):
        prepare(small_vit(), "head", rank=4)
    model = prepare(small_vit(), "head")
    with pytest.raises(ValueError, match="already prepared"):
        prepare(model, "adapter")
    with pytest.raises(ValueError, match="no trainable classifier head"):
        prepare(timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0), "head")
    with pytest.raises(ValueError, match="rank=0"):
        prepare(small_vit(), "adapter", rank=0)
