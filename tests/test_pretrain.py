"""Mini-backbone pretraining: exported weights + provenance, cached on the second call, loadable as pretrained."""
from __future__ import annotations

import json

import pytest
import torch

from adaptertune import create_backbone
from adaptertune.backbones import mini_weights_path
from adaptertune.cli import main
from adaptertune.training.pretrain import RECIPES, pretrain_config, pretrain_mini


def test_smoke_pretraining_exports_cached_loadable_weights(isolated_home, monkeypatch):
    out = pretrain_mini(profile="smoke", names=("mini-s",), verbose=False)
    path = mini_weights_path("mini-s", "smoke")
    assert path.is_file() and str(path).startswith(str(isolated_home))
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta == out["mini-s"]
    assert meta["source_dataset"] == "fmnist_source" and meta["epochs"] == RECIPES["smoke"]["epochs"]
    assert {"spec", "source_sizes", "recipe", "source_val_acc", "source_test_acc", "run_id", "git_sha", "versions",
            "wall_s"} <= set(meta)
    assert 0.0 <= meta["source_test_acc"] <= 1.0

    model = create_backbone("mini-s", 3, pretrained=True, profile="smoke")
    info = getattr(model, "adaptertune_backbone")
    assert info["pretrained"] and info["tag"] == meta["tag"] and info["source"].startswith("file:")
    from safetensors.torch import load_file

    saved = load_file(str(path))
    assert not any(k.startswith("head.") for k in saved)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in saved.items())

    import adaptertune.training.pretrain as train

    monkeypatch.setattr(train, "run", lambda *a, **k: pytest.fail("cached weights must not be retrained"))
    assert pretrain_mini(profile="smoke", names=("mini-s",), verbose=False) == out


def test_pretraining_recipe_is_a_full_from_scratch_run():
    cfg = pretrain_config("mini-b", "mini")
    assert cfg.method == "full" and cfg.pretrained is False and cfg.dataset == "fmnist_source" and cfg.profile == "mini"
    with pytest.raises(ValueError, match="not a mini backbone"):
        pretrain_config("vit_small_patch16_224")
    with pytest.raises(ValueError, match="choose one of"):
        pretrain_config("mini-s", "paper")


def test_cli_pretrain_mini_smoke(isolated_home, capsys):
    assert main(["pretrain-mini", "--profile", "smoke", "--names", "mini-b"]) == 0
    assert "source val acc" in capsys.readouterr().out
    assert mini_weights_path("mini-b", "smoke").is_file()
    assert main(["pretrain-mini", "--profile", "smoke", "--names", "mini-b"]) == 0
    assert "cached" in capsys.readouterr().out
