"""RunConfig: validation with clear errors, YAML coercion, and run identity (what changes the run_id)."""
from __future__ import annotations

import shutil

import json

import pytest

from adaptertune import RunConfig
from adaptertune.data.folder import folder_digest


def tiny(**changes) -> RunConfig:
    base = dict(dataset="digits", backbone="mini-s", method="adapter", pretrained=False, profile="smoke", epochs=2,
                warmup_epochs=1, batch_size=64, limit=400, log_every=2, train_eval_limit=200)
    return RunConfig(**{**base, **changes})


@pytest.mark.parametrize("changes, needle", [
    ({"method": "ssf"}, "('head', 'adapter', 'full', 'lora', 'bitfit')"),
    ({"precision": "fp16"}, "('fp32', 'tf32', 'bf16')"),
    ({"profile": "big"}, "('smoke', 'mini', 'paper')"),
    ({"head_mode": "cached_features"}, "needs method='head'"),
    ({"rank": 0}, "rank=0"),
    ({"lr": -1.0}, "lr=-1.0"),
    ({"warmup_epochs": 9}, "warmup_epochs=9"),
    ({"epochs": 0}, "epochs=0"),
    ({"val_fraction": 1.0}, "val_fraction=1.0"),
    ({"pretrained": "yes"}, "pretrained='yes'"),
    ({"grad_clip": 0.0}, "grad_clip=0.0"),
])
def test_config_rejects_bad_values(changes, needle):
    with pytest.raises(ValueError) as err:
        tiny(**changes)
    assert needle in str(err.value)


def test_config_from_dict_rejects_unknown_keys_and_coerces_yaml_floats():
    with pytest.raises(ValueError, match=r"unknown config key\(s\) \['learning_rate'\]"):
        RunConfig.from_dict({"dataset": "digits", "backbone": "mini-s", "method": "head", "learning_rate": 1e-3})
    cfg = RunConfig.from_dict({"dataset": "digits", "backbone": "mini-s", "method": "head", "lr": "1e-3"})
    assert cfg.lr == 1e-3


def test_run_id_hashes_semantic_fields_only():
    cfg = tiny()
    assert cfg.run_id == tiny(num_workers=4, log_every=50, compile=True).run_id
    assert cfg.run_id != tiny(lr=2e-3).run_id and cfg.run_id != tiny(seed=1).run_id
    assert len(cfg.run_id) == 12
    # adapter fields do not matter for head-only / full runs, so a rank grid dedupes them
    assert tiny(method="head", rank=4).run_id == tiny(method="head", rank=32).run_id
    assert tiny(method="head").resolved().rank is None
    assert RunConfig.from_dict(json.loads(json.dumps(cfg.resolved().to_dict()))).run_id == cfg.run_id


def test_backbone_alias_and_timm_name_are_one_run():
    alias = RunConfig(dataset="cifar100", backbone="vit-s16", method="adapter", profile="paper")
    name = RunConfig(dataset="cifar100", backbone="vit_small_patch16_224", method="adapter", profile="paper")
    assert alias.run_id == name.run_id and alias.resolved().backbone == "vit_small_patch16_224"


def test_adapter_defaults_come_from_one_adapter_config():
    from dataclasses import fields

    from adaptertune import AdapterConfig, Adapter
    from adaptertune.config import ADAPTER_FIELDS

    defaults = AdapterConfig()
    cfg = tiny()
    assert ADAPTER_FIELDS == tuple(f.name for f in fields(AdapterConfig))
    assert all(getattr(RunConfig.__dataclass_fields__[f], "default") == getattr(defaults, f) for f in ADAPTER_FIELDS)
    assert cfg.adapter_config() == AdapterConfig()
    assert tiny(method="head").adapter_config() is None
    adapter = Adapter(64)
    assert (adapter.rank, adapter.scale, adapter.init, adapter.init_std) == (defaults.rank, defaults.scale, defaults.init,
                                                                              defaults.init_std)


def test_run_id_knows_the_backbone_weights_and_the_split(isolated_home, monkeypatch):
    """A re-pretrained mini backbone or a changed split definition is another run; an identical file is the same."""
    import torch
    from safetensors.torch import save_file

    from adaptertune import backbones
    from adaptertune.data import registry

    cfg = RunConfig(dataset="fmnist_target", backbone="mini-s", method="adapter", profile="smoke")
    before = cfg.run_id
    assert cfg.input_digests()["backbone"] == "missing:mini-s"  # provisional until the weights exist
    path = backbones.mini_weights_path("mini-s", "smoke")
    path.parent.mkdir(parents=True)
    save_file({"w": torch.zeros(3)}, str(path))
    first = cfg.run_id
    assert first != before and cfg.input_digests()["backbone"].startswith("mini:")
    save_file({"w": torch.zeros(3)}, str(path))  # the same bytes again: the same run
    assert cfg.run_id == first
    save_file({"w": torch.ones(3)}, str(path))  # pretrained again, other weights
    assert cfg.run_id != first
    assert cfg.with_(pretrained=False).input_digests()["backbone"] == "random"
    timm_cfg = cfg.with_(backbone="vit-s16")
    assert timm_cfg.input_digests()["backbone"] == "timm:vit_small_patch16_224.augreg_in1k"
    again = cfg.run_id
    sizes = {**registry.MINI_SIZES, "fmnist_target": {**registry.MINI_SIZES["fmnist_target"], "pool_cap": 2000}}
    monkeypatch.setattr(registry, "MINI_SIZES", sizes)
    import adaptertune.digests as digests

    monkeypatch.setattr(digests, "MINI_SIZES", sizes)
    assert cfg.run_id != again  # another pool: other images, another run


def test_run_id_of_a_folder_follows_its_files(tmp_path):
    root = tmp_path / "pets"
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        (root / name / "a.png").write_bytes(b"x")
    cfg = RunConfig(dataset=str(root), backbone="vit-s16", method="head", profile="paper")
    first = cfg.run_id
    (root / "dog" / "b.png").write_bytes(b"y")
    added = cfg.run_id
    assert added != first
    (root / "dog" / "b.png").write_bytes(b"z")  # the same name, other bytes: a new input
    assert cfg.run_id != added
    (root / "dog" / "notes.txt").write_text("not an image")  # what the dataset never reads changes nothing
    assert cfg.run_id == RunConfig(dataset=str(root), backbone="vit-s16", method="head", profile="paper").run_id
    copy = tmp_path / "elsewhere" / "pets"
    shutil.copytree(root, copy)
    assert folder_digest(copy) == folder_digest(root)  # the digest is of the images, not of where they are
