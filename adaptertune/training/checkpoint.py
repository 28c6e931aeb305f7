"""Epoch-end checkpoints in ONE safetensors file, replaced atomically: a kill at any moment leaves either
the previous epoch's checkpoint or the new one, never a mix.

The file holds the trained tensors (``model.*``: adapters + head, or every tensor for full fine-tuning),
the optimizer state tensors (``optim.*``), the RNG states (``rng.*``), and in its JSON metadata the
optimizer's hyper-parameters, the epoch/step counters and the metric history up to this epoch. Nothing is
pickled, so loading a checkpoint cannot execute code. The learning-rate schedule is a pure function of
the global step, so restoring the step restores the scheduler.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from torch import nn

from ..atomic import atomic_save_safetensors
from ..regimes import regime

FORMAT = "adaptertune-checkpoint/1"
CHECKPOINT_FILE = "checkpoint.safetensors"


def trained_state(model: nn.Module, method: str) -> dict[str, torch.Tensor]:
    """What a checkpoint must keep: the whole state for full FT, else only the trainable parameters."""
    if regime(method).whole_model:
        return dict(model.state_dict())
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for pid, slots in state["state"].items():
        for key, value in slots.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{pid}.{key}"] = value
            else:
                scalars[f"{pid}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def save_checkpoint(path: Path, model: nn.Module, method: str, optimizer: torch.optim.Optimizer, state: dict) -> Path:
    """Write ``state`` (JSON-able: epoch, step, history...) with model/optimizer/RNG tensors, atomically."""
    tensors = {f"model.{k}": v for k, v in trained_state(model, method).items()}
    optim_tensors, optim_meta = _optimizer_tensors(optimizer)
    tensors |= optim_tensors
    tensors["rng.cpu"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    meta = {"format": FORMAT, "state": json.dumps(state), "optimizer": json.dumps(optim_meta)}
    return atomic_save_safetensors(tensors, path, metadata=meta)


def read_checkpoint_state(path: Path) -> dict | None:
    """The JSON state of a checkpoint, or None when there is none; a corrupt file is an error naming it."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
    except Exception as err:
        raise ValueError(f"checkpoint {path} is unreadable (corrupt?): {err}; delete it to restart the run") from err
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not an adaptertune checkpoint (format={meta.get('format')!r}, expected {FORMAT!r})")
    return json.loads(meta["state"])


def load_checkpoint(path: Path, model: nn.Module, method: str, optimizer: torch.optim.Optimizer) -> dict:
    """Restore model, optimizer and RNG in place; returns the JSON state saved with them."""
    state = read_checkpoint_state(path)
    if state is None:
        raise FileNotFoundError(f"no checkpoint at {path}")
    with safe_open(str(path), framework="pt", device="cpu") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    model_state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    expected = trained_state(model, method)
    if set(model_state) != set(expected):
        diff = sorted(set(model_state) ^ set(expected))[:6]
        raise ValueError(f"checkpoint {path} does not fit this model (tensors differ, e.g. {diff})")
    with torch.no_grad():
        for name, value in model_state.items():
            expected[name].copy_(value)
    optim_meta = json.loads(meta["optimizer"])
    slots: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, pid, slot = key.split(".", 2)
            slots.setdefault(int(pid), {})[slot] = value
    for key, value in optim_meta["scalars"].items():
        pid, slot = key.split(".", 1)
        slots.setdefault(int(pid), {})[slot] = value
    optimizer.load_state_dict({"state": slots, "param_groups": optim_meta["param_groups"]})
    torch.set_rng_state(tensors["rng.cpu"])
    cuda_states = [tensors[k] for k in sorted((k for k in tensors if k.startswith("rng.cuda.")), key=lambda k: int(k.rsplit(".", 1)[1]))]
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda_states)
    return state


__all__ = ["CHECKPOINT_FILE", "load_checkpoint", "read_checkpoint_state", "save_checkpoint", "trained_state"]
