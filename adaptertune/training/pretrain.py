"""Self-pretraining of the ``mini`` backbones, so the offline protocol has a real "pretrained" ViT.

Each mini ViT is trained from scratch (method ``full``, ``pretrained=False``) on ``fmnist_source`` (half of
the Fashion-MNIST classes) with the very training loop of the experiments (:func:`adaptertune.train.run`,
so the pretraining run sits in the run store like any other), then its backbone weights without the head
are exported to ``backbones.mini_weights_path(name, profile)`` with a provenance JSON beside them.
Adaptation then happens on ``fmnist_target`` (the other classes) or on digits: a real domain/label shift.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from safetensors.torch import load_file

from ..atomic import atomic_save_safetensors
from ..backbones import MINI_BACKBONES, mini_weights_path, spec_dict
from ..config import RunConfig
from ..store import runs as results
from ..store.provenance import environment
from .run import run

SOURCE_DATASET = "fmnist_source"
# Per profile: the recipe of the pretraining runs. mini: sized for both mini backbones in about 7.5 min on
# 2 CPU cores (limit 15); measured 80.9% (mini-s) / 78.3% (mini-b) source test accuracy, both still improving
# at epoch 10. Pretraining skips augmentation: in an early trial (on a stand-in split) augmented pretraining
# was still under-fitting after 12 epochs (the adaptation runs keep the paper's augmentation). smoke: a few steps, plumbing only.
RECIPES: dict[str, dict] = {
    "mini": {"epochs": 10, "lr": 3e-3, "weight_decay": 0.05, "batch_size": 128, "warmup_epochs": 1, "limit": None,
             "augment": False},
    "smoke": {"epochs": 1, "lr": 1e-3, "weight_decay": 0.05, "batch_size": 64, "warmup_epochs": 0, "limit": 256,
              "augment": False},
}
PRETRAIN_PROFILES = tuple(RECIPES)


def pretrain_config(name: str, profile: str = "mini") -> RunConfig:
    """The RunConfig of the pretraining run for one mini backbone."""
    if name not in MINI_BACKBONES:
        raise ValueError(f"backbone {name!r} is not a mini backbone: choose from {sorted(MINI_BACKBONES)}")
    if profile not in RECIPES:
        raise ValueError(f"profile={profile!r} is not allowed for pretrain-mini: choose one of {PRETRAIN_PROFILES}")
    return RunConfig(dataset=SOURCE_DATASET, backbone=name, method="full", pretrained=False, profile=profile, seed=0,
                     **RECIPES[profile])


def _export(name: str, profile: str, result: dict, root: str | Path | None) -> Path:
    """Backbone tensors (head dropped) + provenance JSON, each written atomically."""
    run_dir = results.run_path(result["run_id"], root)
    state = load_file(str(run_dir / results.MODEL_FILE))
    backbone = {k: v for k, v in state.items() if not k.startswith("head.")}
    path = mini_weights_path(name, profile)
    atomic_save_safetensors(backbone, path, metadata={"format": "adaptertune-mini-backbone/1", "run_id": result["run_id"]})
    cfg, metrics = result["config"], result["metrics"]
    env = environment()
    provenance = {
        "name": name, "tag": f"{profile}-{SOURCE_DATASET}-{result['run_id']}", "spec": spec_dict(name),
        "profile": profile, "source_dataset": SOURCE_DATASET, "source_sizes": result["dataset"]["sizes"],
        "source_classes": result["dataset"]["class_names"], "dataset_info": result["dataset"].get("info"),
        "epochs": cfg["epochs"],
        "recipe": {k: cfg[k] for k in ("lr", "weight_decay", "batch_size", "warmup_epochs", "grad_clip", "precision",
                                       "augment", "limit", "seed", "decay_all")},
        "source_val_acc": metrics["val_acc"], "source_best_val_acc": metrics["best_val_acc"],
        "source_test_acc": metrics["test_acc"], "run_id": result["run_id"], "wall_s": result["wall_s"],
        "git_sha": env["git_sha"], "git_dirty": env["git_dirty"], "versions": env["versions"],
        "device": result.get("device"), "tensors": len(backbone),
    }
    results.write_json(path.with_suffix(".json"), provenance)
    return path


def pretrain_mini(profile: str = "mini", names: tuple[str, ...] = ("mini-s", "mini-b"), force: bool = False,
                  root: str | Path | None = None, progress: bool | None = None, verbose: bool = True) -> dict[str, dict]:
    """Pretrain (or find cached) each named mini backbone; returns name -> provenance dict.

    A second call finds the exported weights and returns at once; ``force=True`` retrains and overwrites.
    """


    out: dict[str, dict] = {}
    for name in names:
        cfg = pretrain_config(name, profile)
        path = mini_weights_path(name, profile)
        meta = path.with_suffix(".json")
        if path.is_file() and meta.is_file() and not force:
            out[name] = json.loads(meta.read_text())
            if verbose:
                print(f"[pretrain-mini] {name} ({profile}): cached at {path}")
            continue
        if verbose:
            print(f"[pretrain-mini] {name} ({profile}): training from scratch on {SOURCE_DATASET} "
                  f"({cfg.epochs} epochs, lr {cfg.lr}, batch {cfg.batch_size}) as run {cfg.run_id}", flush=True)
        t0 = time.perf_counter()
        result = run(cfg, root=root, progress=progress, verbose=verbose, force=force)
        _export(name, profile, result, root)
        out[name] = json.loads(meta.read_text())
        if verbose:
            print(f"[pretrain-mini] {name}: source test acc {out[name]['source_test_acc']:.2%}, "
                  f"{time.perf_counter() - t0:.0f}s -> {path}", flush=True)
    return out


__all__ = ["PRETRAIN_PROFILES", "RECIPES", "SOURCE_DATASET", "pretrain_config", "pretrain_mini"]
