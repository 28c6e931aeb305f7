import json

import pytest
import timm
import torch
from safetensors.torch import save_file

from adaptertune import PretrainedWeightsError, backbone_info, create_backbone, data_config
from adaptertune.backbones import MINI_BACKBONES, PAPER_BACKBONES, mini_weights_path, resolve_name


def test_paper_names_resolve_to_pinned_tags():
    assert resolve_name("vit_small_patch16_224") == "vit_small_patch16_224.augreg_in1k"
    assert resolve_name("vit-b16") == "vit_base_patch16_224.augreg2_in21k_ft_in1k"
    assert resolve_name("deit_tiny_patch16_224") == "deit_tiny_patch16_224.fb_in1k"
    for full in PAPER_BACKBONES.values():
        assert timm.models.get_pretrained_cfg(full) is not None, full


def test_random_weights_on_request_are_recorded():
    model = create_backbone("deit_tiny_patch16_224", 10, pretrained=False)
    info = backbone_info(model)
    assert info["pretrained"] is False and info["source"] == "random" and info["tag"] == "fb_in1k"
    assert model.get_classifier().out_features == 10


def test_pretrained_offline_fails_loudly_with_instructions():
    with pytest.raises(PretrainedWeightsError) as err:
        create_backbone("vit_small_patch16_224", 10, pretrained=True)
    text = str(err.value)
    assert "vit_small_patch16_224.augreg_in1k" in text and "checkpoint=" in text and "pretrain-mini" in text


def test_model_without_pretrained_weights_is_refused():
    with pytest.raises((PretrainedWeightsError, RuntimeError, ValueError)):
        create_backbone("vit_small_patch16_224.no_such_tag", 10, pretrained=True)


def test_local_safetensors_checkpoint_loads(tmp_path):
    torch.manual_seed(1)
    source = timm.create_model("deit_tiny_patch16_224", pretrained=False)  # 1000-class head, like a hub file
    path = tmp_path / "deit.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    model = create_backbone("deit_tiny_patch16_224", 10, checkpoint=path)
    ref = source.state_dict()
    for k, v in model.state_dict().items():
        if not k.startswith("head."):
            assert torch.equal(v, ref[k]), k
    assert model.head.out_features == 10
    assert backbone_info(model)["source"] == f"file:{path}"


def test_bad_checkpoints_are_refused(tmp_path):
    with pytest.raises(PretrainedWeightsError, match="does not exist"):
        create_backbone("deit_tiny_patch16_224", 10, checkpoint=tmp_path / "missing.safetensors")
    other = timm.create_model("vit_small_patch16_224", pretrained=False)
    path = tmp_path / "vits.safetensors"
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(path))
    with pytest.raises(PretrainedWeightsError, match="could not load"):
        create_backbone("deit_tiny_patch16_224", 10, checkpoint=path)


def test_unknown_name_and_bad_classes():
    with pytest.raises(ValueError, match="'not_a_model'"):
        create_backbone("not_a_model", 10, pretrained=False)
    with pytest.raises(ValueError, match="num_classes=0"):
        create_backbone("mini-s", 0, pretrained=False)


def test_mini_backbone_cache(isolated_home):
    with pytest.raises(PretrainedWeightsError, match="pretrain-mini"):
        create_backbone("mini-s", 5)
    torch.manual_seed(0)
    source = create_backbone("mini-s", 5, pretrained=False)
    path = mini_weights_path("mini-s")
    path.parent.mkdir(parents=True)
    save_file({k: v for k, v in source.state_dict().items() if not k.startswith("head.")}, str(path))
    path.with_suffix(".json").write_text(json.dumps({"tag": "fmnist_source-test"}))
    model = create_backbone("mini-s", 3)
    assert torch.equal(model.blocks[2].mlp.fc1.weight, source.blocks[2].mlp.fc1.weight)
    assert backbone_info(model)["tag"] == "fmnist_source-test"
    with pytest.raises(PretrainedWeightsError):
        create_backbone("mini-s", 3, profile="smoke")  # each profile has its own cache


def test_data_config_uses_checkpoint_normalisation():
    cfg = data_config(create_backbone("vit_small_patch16_224", 10, pretrained=False))
    assert cfg["input_size"] == (3, 224, 224) and cfg["mean"] == (0.5, 0.5, 0.5)
    assert data_config(create_backbone("deit_tiny_patch16_224", 10, pretrained=False))["mean"][0] == pytest.approx(0.485)
    mini = data_config(create_backbone("mini-b", 10, pretrained=False))
    assert mini["input_size"] == (1, 28, 28)
    assert set(MINI_BACKBONES) >= {"mini-s", "mini-b"}
