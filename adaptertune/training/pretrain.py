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
from ..backbones import mini_variant, mini_weights_path, spec_dict
from ..profiles import MINI_SOURCE
from ..config import RunConfig
from ..store import runs as run_store
from ..store.provenance import environment
from .run import run

SOURCE_DATASET = MINI_SOURCE
# Per profile: the recipe of the pretraining runs. mini: both mini backbones in about 7 minutes on 2 CPU cores; their
# source accuracies are in each backbone's provenance JSON (and notebook 05), not restated here. Pretraining skips
# augmentation: in an early trial augmented pretraining was still under-fitting after 12 epochs (the adaptation runs
# keep the paper's augmentation). smoke: a few steps, plumbing only (2 epochs, so a snapshot variant exists).
RECIPES: dict[str, dict] = {
    "mini": {"epochs": 10, "lr": 3e-3, "weight_decay": 0.05, "batch_size": 128, "warmup_epochs": 1, "limit": None,
             "augment": False},
    "smoke": {"epochs": 2, "lr": 1e-3, "weight_decay": 0.05, "batch_size": 64, "warmup_epochs": 0, "limit": 256,
              "augment": False},
}
PRETRAIN_PROFILES = tuple(RECIPES)


def pretrain_config(name: str, profile: str = "mini", snapshot_epochs: tuple[int, ...] = ()) -> RunConfig:
    """The RunConfig of the pretraining run behind a mini backbone (``mini-s.p1``: the same recipe with seed 1;
    ``mini-s.e2``: the run of ``mini-s`` itself, which keeps its epoch-2 weights)."""
    base, kind, number = mini_variant(name)
    if profile not in RECIPES:
        raise ValueError(f"profile={profile!r} is not allowed for pretrain-mini: choose one of {PRETRAIN_PROFILES}")
    recipe = RECIPES[profile]
    epochs = tuple(sorted(set(snapshot_epochs) | ({number} if kind == "e" else set())))
    if any(not 1 <= e < recipe["epochs"] for e in epochs):
        raise ValueError(f"snapshot epochs {epochs} of {name!r} are not allowed for profile {profile!r}: use 1 <= k < "
                         f"{recipe['epochs']} (the pretraining's epochs)")
    return RunConfig(dataset=SOURCE_DATASET, backbone=base, method="full", pretrained=False, profile=profile,
                     seed=number if kind == "p" else 0, snapshot_epochs=epochs, **recipe)


def _export(name: str, profile: str, result: dict, root: str | Path | None) -> Path:
    """Backbone tensors (head dropped) + provenance JSON, each written atomically; a snapshot variant exports the
    weights its run kept after that epoch, with that epoch's source validation accuracy."""
    run_dir = run_store.run_path(result["run_id"], root)
    _, kind, number = mini_variant(name)
    epoch = number if kind == "e" else result["config"]["epochs"]
    state = load_file(str(run_store.snapshot_path(run_dir, epoch) if kind == "e" else run_dir / run_store.MODEL_FILE))
    backbone = {k: v for k, v in state.items() if not k.startswith("head.")}
    path = mini_weights_path(name, profile)
    atomic_save_safetensors(backbone, path, metadata={"format": "adaptertune-mini-backbone/1", "run_id": result["run_id"],
                                                      "epoch": str(epoch)})
    cfg, metrics = result["config"], result["metrics"]
    at_epoch = run_store.load_metrics(result["run_id"], root).set_index("epoch").loc[epoch]
    env = environment()
    provenance = {
        "name": name, "tag": f"{profile}-{SOURCE_DATASET}-{result['run_id']}-epoch{epoch}", "spec": spec_dict(name),
        "profile": profile, "source_dataset": SOURCE_DATASET, "source_sizes": result["dataset"]["sizes"],
        "source_classes": result["dataset"]["class_names"], "dataset_info": result["dataset"].get("info"),
        "epochs": cfg["epochs"], "epoch": epoch,
        "recipe": {k: cfg[k] for k in ("lr", "weight_decay", "batch_size", "warmup_epochs", "grad_clip", "precision",
                                       "augment", "limit", "seed", "decay_all")},
        "source_val_acc": float(at_epoch["val_acc"]), "source_best_val_acc": metrics["best_val_acc"],
        "source_test_acc": metrics["test_acc"] if kind != "e" else None, "run_id": result["run_id"],
        "wall_s": result["wall_s"], "git_sha": env["git_sha"], "git_dirty": env["git_dirty"],
        "versions": env["versions"], "device": result.get("device"), "threads": result.get("threads"),
        "tensors": len(backbone),
    }
    run_store.write_json(path.with_suffix(".json"), provenance)
    return path


def pretrain_mini(profile: str = "mini", names: tuple[str, ...] = ("mini-s", "mini-b"), force: bool = False,
                  root: str | Path | None = None, progress: bool | None = None, verbose: bool = True) -> dict[str, dict]:
    """Pretrain (or find cached) each named mini backbone or variant; returns name -> provenance dict.

    Snapshot variants (``mini-s.e2``) come from their base's run, which is asked to keep every requested epoch; a
    finished base run without a requested snapshot is retrained (bit-identical). Exported weights are found at once on
    a second call; ``force=True`` retrains and overwrites.
    """
    out: dict[str, dict] = {}
    snapshots: dict[str, set[int]] = {}
    for name in names:
        base, kind, number = mini_variant(name)
        if kind == "e":
            snapshots.setdefault(base, set()).add(number)
    for name in names:
        base, kind, _ = mini_variant(name)
        cfg = pretrain_config(name, profile, tuple(snapshots.get(base, ())) if kind != "p" else ())
        path = mini_weights_path(name, profile)
        meta = path.with_suffix(".json")
        if path.is_file() and meta.is_file() and not force:
            out[name] = json.loads(meta.read_text())
            if verbose:
                print(f"[pretrain-mini] {name} ({profile}): cached at {path}")
            continue
        t0 = time.perf_counter()
        missing_snapshot = any(not run_store.snapshot_path(run_store.run_path(cfg.run_id, root), e).is_file()
                               for e in cfg.snapshot_epochs)
        if verbose and run_store.run_status(cfg.run_id, root) != "finished":
            print(f"[pretrain-mini] {name} ({profile}): training {base} from scratch on {SOURCE_DATASET} "
                  f"({cfg.epochs} epochs, lr {cfg.lr}, batch {cfg.batch_size}, seed {cfg.seed}) as run {cfg.run_id}",
                  flush=True)
        redo = force or (missing_snapshot and run_store.run_status(cfg.run_id, root) == "finished")
        result = run(cfg, root=root, progress=progress, verbose=verbose, force=redo)
        _export(name, profile, result, root)
        out[name] = json.loads(meta.read_text())
        if verbose:
            print(f"[pretrain-mini] {name}: source val acc {out[name]['source_val_acc']:.2%} (epoch "
                  f"{out[name]['epoch']}), {time.perf_counter() - t0:.0f}s -> {path}", flush=True)
    return out


__all__ = ["PRETRAIN_PROFILES", "RECIPES", "SOURCE_DATASET", "pretrain_config", "pretrain_mini"]
