import copy

import pytest
import timm
import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from adaptertune import add_adapters, adapter_config, adapter_modules, prepare

PAPER_ARCHS = ["vit_small_patch16_224", "vit_base_patch16_224", "deit_tiny_patch16_224"]


def small_vit(**kw) -> VisionTransformer:
    torch.manual_seed(0)
    return VisionTransformer(img_size=28, patch_size=7, in_chans=1, num_classes=10, embed_dim=48, depth=4, num_heads=3, **kw)


@pytest.mark.parametrize("arch", PAPER_ARCHS)
def test_identity_at_init_paper_backbones(arch):
    torch.manual_seed(0)
    model = timm.create_model(arch, pretrained=False, num_classes=10)
    x = torch.randn(2, 3, 224, 224)
    for train in (False, True):
        model.train(train)
        with torch.no_grad():
            ref = model(x)
        adapted = add_adapters(copy.deepcopy(model), rank=16)
        adapted.train(train)
        with torch.no_grad():
            assert torch.equal(adapted(x), ref)
    assert len(adapter_modules(adapted)) == 12


@pytest.mark.parametrize("every", [1, 2, 3])
@pytest.mark.parametrize("train", [False, True])
def test_identity_at_init_28px_vit(every, train):
    model = small_vit().train(train)
    x = torch.randn(5, 1, 28, 28)
    with torch.no_grad():
        ref = model(x)
        feats = model.forward_features(x)
    add_adapters(model, rank=8, every=every)
    with torch.no_grad():
        assert torch.equal(model(x), ref)
        assert torch.equal(model.forward_features(x), feats)
    assert sorted(adapter_modules(model)) == list(range(0, 4, every))


def test_adapter_changes_output_once_trained():
    model = small_vit().eval()
    x = torch.randn(2, 1, 28, 28)
    ref = model(x)
    add_adapters(model, rank=4)
    with torch.no_grad():
        model.blocks[1].adapter.up.bias.copy_(torch.randn(48))  # not a constant: LayerNorm would cancel that
    assert not torch.allclose(model(x), ref)


def test_state_dict_keys_of_backbone_unchanged_and_checkpoint_loads():
    model = small_vit()
    original = copy.deepcopy(model.state_dict())
    add_adapters(model, rank=4, every=2)
    keys = list(model.state_dict())
    extra = [k for k in keys if k not in original]
    assert [k for k in keys if k in original] == list(original)
    assert extra == [f"blocks.{i}.adapter.{p}" for i in (0, 2) for p in ("down.weight", "down.bias", "up.weight", "up.bias")]
    missing, unexpected = model.load_state_dict(original, strict=False)
    assert sorted(missing) == sorted(extra) and unexpected == []


def test_start_places_adapters_from_block():
    model = add_adapters(small_vit(), rank=4, every=2, start=1)
    assert sorted(adapter_modules(model)) == [1, 3]
    assert adapter_config(model).start == 1


@pytest.mark.parametrize("kwargs, message", [
    ({"rank": 0}, r"rank=0"), ({"rank": -1}, r"rank=-1"), ({"rank": 49}, r"rank=49 .*embed_dim=48"),
    ({"every": 0}, r"every=0"), ({"every": -2}, r"every=-2"), ({"init": "orthogonal"}, r"init='orthogonal'.*zero"),
    ({"start": 4}, r"start=4"),
])
def test_bad_options_raise_value_error_naming_value(kwargs, message):
    model = small_vit()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match=message):
        add_adapters(model, **kwargs)
    assert adapter_config(model) is None and not adapter_modules(model)
    assert model.state_dict().keys() == before.keys()


def test_twice_raises():
    model = add_adapters(small_vit(), rank=4)
    with pytest.raises(ValueError, match="already has adapters"):
        add_adapters(model, rank=4)


def test_model_without_blocks_raises():
    with pytest.raises(ValueError, match="blocks"):
        add_adapters(nn.Sequential(nn.Linear(4, 4)))
    with pytest.raises(ValueError, match="blocks"):
        add_adapters(timm.create_model("resnet18", pretrained=False, num_classes=3))


def test_frozen_dropout_stays_off_in_train_mode():
    """Frozen modules are pinned to eval: a ViT built with dropout still computes the pretrained function."""
    model = small_vit(drop_rate=0.5, attn_drop_rate=0.5, proj_drop_rate=0.5, drop_path_rate=0.5)
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        ref = model.eval()(x)
    prepare(model, "adapter", rank=4)
    model.train()
    assert model.training and model.blocks[0].adapter.training
    assert not model.blocks[0].attn.training and not model.patch_embed.training
    with torch.no_grad():
        assert torch.equal(model(x), ref)
        assert torch.equal(model(x), ref)


def test_deepcopy_keeps_adapters_working():
    model = add_adapters(small_vit(), rank=4)
    with torch.no_grad():
        model.blocks[0].adapter.up.bias.fill_(1.0)
    clone = copy.deepcopy(model)
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(clone.eval()(x), model.eval()(x))


def test_add_adapters_takes_a_config_with_keyword_overrides():
    from adaptertune import AdapterConfig

    model = add_adapters(small_vit(), AdapterConfig(rank=4, every=3), every=2)
    assert adapter_config(model) == AdapterConfig(rank=4, every=2)
    with pytest.raises(ValueError, match=r"unknown adapter option\(s\) \['rnak'\]"):
        add_adapters(small_vit(), rnak=4)
    with pytest.raises(TypeError, match="pass an AdapterConfig"):
        add_adapters(small_vit(), 4)
