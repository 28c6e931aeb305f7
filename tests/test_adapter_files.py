import copy

import pytest
import torch
from safetensors import safe_open

from adaptertune import create_backbone, load_adapters, prepare, save_adapters
from adaptertune.adapter_files import read_adapter_file
from helpers import perturb_trainable


def trained(method="adapter", seed=0, **options):
    torch.manual_seed(seed)
    model = create_backbone("mini-s", 7, pretrained=False)
    prepare(model, method, **options)
    return perturb_trainable(model).eval()


def fresh_like(model, num_classes=7):
    fresh = create_backbone("mini-s", num_classes, pretrained=False)
    backbone = {k: v for k, v in model.state_dict().items() if ".adapter." not in k and not k.startswith("head.")}
    missing, unexpected = fresh.load_state_dict(backbone, strict=False)
    assert set(missing) == {"head.weight", "head.bias"} and not unexpected
    return fresh


def snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("method, options", [("adapter", {"rank": 8, "every": 2}), ("adapter", {"rank": 4, "start": 3}), ("head", {})])
def test_round_trip_is_bit_exact(tmp_path, method, options):
    model = trained(method, **options)
    path = save_adapters(model, tmp_path / "a.safetensors", class_names=list("abcdefg"))
    with safe_open(str(path), "pt") as f:
        keys = set(f.keys())
    assert keys == {n for n, p in model.named_parameters() if p.requires_grad}
    fresh = fresh_like(model)
    load_adapters(fresh, path)
    x = torch.randn(6, 1, 28, 28)
    assert torch.equal(fresh.eval()(x), model(x))
    meta, _ = read_adapter_file(path)
    assert meta["method"] == method and meta["backbone"] == "mini-s"
    assert '"a"' in meta["class_names"]
    assert not list(tmp_path.glob(".*.tmp"))  # nothing half-written left behind


def test_other_backbone_is_refused_and_model_unchanged(tmp_path):
    path = save_adapters(trained(seed=0, rank=8), tmp_path / "a.safetensors")
    torch.manual_seed(1)
    other = create_backbone("mini-s", 7, pretrained=False)  # different random backbone weights
    before = snapshot(other)
    with pytest.raises(ValueError, match="another backbone"):
        load_adapters(other, path)
    assert same(before, snapshot(other))
    assert not any(".adapter." in k for k in other.state_dict())


def test_different_rank_is_refused(tmp_path):
    model = trained(rank=8)
    path = save_adapters(model, tmp_path / "a.safetensors")
    target = prepare(fresh_like(model), "adapter", rank=4)
    before = snapshot(target)
    with pytest.raises(ValueError, match="rank=8"):
        load_adapters(target, path)
    assert same(before, snapshot(target))


def test_wrong_num_classes_is_refused(tmp_path):
    model = trained(rank=8)
    path = save_adapters(model, tmp_path / "a.safetensors")
    target = fresh_like(model, num_classes=3)
    before = snapshot(target)
    with pytest.raises(ValueError, match="num_classes"):
        load_adapters(target, path)
    assert same(before, snapshot(target))


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_file_is_refused(tmp_path, damage):
    model = trained(rank=8)
    path = save_adapters(model, tmp_path / "a.safetensors")
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"\x00" * 64 + data[64:], "empty": b""}[damage])
    target = fresh_like(model)
    before = snapshot(target)
    with pytest.raises(ValueError, match="a.safetensors"):
        load_adapters(target, path)
    assert same(before, snapshot(target))


def test_missing_file_and_full_model(tmp_path):
    with pytest.raises(ValueError, match="does not exist: pass the path"):
        load_adapters(trained(rank=2), tmp_path / "nope.safetensors")
    with pytest.raises(ValueError, match="'full'"):
        save_adapters(trained("full"), tmp_path / "full.safetensors")


def test_load_onto_matching_prepared_model(tmp_path):
    model = trained(rank=8)
    path = save_adapters(model, tmp_path / "a.safetensors")
    target = prepare(fresh_like(model), "adapter", rank=8)
    load_adapters(target, path)
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(target.eval()(x), model(x))
    assert copy.deepcopy(target) is not None


def test_inference_metadata_is_recorded_and_checked(tmp_path):
    """Class names and the input config travel with the file; a class table of the wrong length is refused."""
    from adaptertune import data_config, open_adapter_file

    model = trained(rank=4)
    path = save_adapters(model, tmp_path / "a.safetensors", class_names=list("abcdefg"))
    file = open_adapter_file(path)
    assert file.class_names == list("abcdefg") and file.num_classes == 7 and file.method == "adapter"
    expected = data_config(model)
    assert file.data_config == {"input_size": list(expected["input_size"]), "mean": list(expected["mean"]),
                                "std": list(expected["std"]), "crop_pct": expected["crop_pct"],
                                "interpolation": expected["interpolation"]}
    assert file.require_class_names() == list("abcdefg")
    with pytest.raises(ValueError, match="3 names but the head has 7 outputs"):
        save_adapters(model, tmp_path / "b.safetensors", class_names=list("abc"))
    assert not (tmp_path / "b.safetensors").exists()
    nameless = open_adapter_file(save_adapters(model, tmp_path / "c.safetensors"))
    with pytest.raises(ValueError, match="c.safetensors has no class-name table.*7 in all"):
        nameless.require_class_names()


def test_head_file_has_no_adapter_config(tmp_path):
    from adaptertune import open_adapter_file

    file = open_adapter_file(save_adapters(trained("head"), tmp_path / "h.safetensors"))
    assert file.method == "head" and file.config is None and set(file.tensors) == {"head.weight", "head.bias"}
