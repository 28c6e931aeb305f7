"""A finished run's trained network, rebuilt from the store: the backbone, then the trained tensors."""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from ..adapter_files import load_adapters
from ..backbones import INFO_ATTR, create_backbone
from ..config import RunConfig, seeded_backbone
from ..regimes import prepare, regime
from .runs import ADAPTER_FILE, MODEL_FILE, existing_run, load_config, read_result


def load_model(run_id: str, root: str | Path | None = None, device: str = "cpu") -> nn.Module:
    """The trained network of a finished run: the backbone rebuilt and the trained tensors loaded, in eval mode."""
    path = existing_run(run_id, root)
    cfg, result = load_config(run_id, root), read_result(run_id, root) or {}
    if result.get("status") != "finished":
        raise ValueError(f"run {run_id!r} is {result.get('status', 'missing')!r}, not finished: it has no final weights")
    num_classes = int(result["dataset"]["num_classes"])
    if regime(cfg.method).whole_model:  # every tensor is in the file: no need for (possibly remote) pretrained weights
        model = create_backbone(cfg.backbone, num_classes, pretrained=False, profile=cfg.profile)
        info = result.get("backbone")
        if info:
            setattr(model, INFO_ATTR, dict(info))
        prepare(model, cfg.method)
        model.load_state_dict(load_file(str(path / MODEL_FILE)), strict=True)
    else:
        model = _backbone(cfg, num_classes)
        load_adapters(model, path / ADAPTER_FILE)  # refuses a backbone that differs from the trained one
    return model.to(torch.device(device)).eval()


def _backbone(cfg: RunConfig, num_classes: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]):  # the caller's RNG stream is left as it was
        return seeded_backbone(cfg, num_classes)


def backbone_for_run(run_id: str, root: str | Path | None = None) -> nn.Module:
    """The bare frozen backbone a head/adapter run was trained on (no adapters, its own head unused), e.g. to serve
    several runs' adapter files from one :class:`adaptertune.MultiTask`. Built exactly as for training (same head
    size, same seed), so a random-weight backbone is rebuilt bit for bit too."""
    cfg, result = load_config(run_id, root), read_result(run_id, root) or {}
    if regime(cfg.method).whole_model:
        raise ValueError(f"run {run_id!r} trained the whole backbone (method {cfg.method!r}): it has no adapter file "
                         "to serve")
    if "dataset" not in result:
        raise ValueError(f"run {run_id!r} has not started (no result.json with its dataset): nothing to rebuild")
    return _backbone(cfg, int(result["dataset"]["num_classes"])).eval()


__all__ = ["backbone_for_run", "load_model"]
