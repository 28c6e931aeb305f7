"""Adapter files: only the trained tensors (adapters + head) in safetensors, with enough metadata to
refuse a file that does not belong to the model it is loaded onto. Never unpickled.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn

from ._version import __version__
from .atomic import atomic_save_safetensors
from .adapter import AdapterConfig
from .backbones import backbone_info
from .inject import adapter_config, embed_dim, is_adapter_parameter, transformer_blocks
from .regimes import head_parameter_names, prepare, prepared_method

FORMAT = "adaptertune-adapters/1"


def backbone_fingerprint(model: nn.Module) -> str:
    """SHA-256 over the frozen backbone's tensors (names, dtypes, shapes, bytes), adapters and head excluded."""
    skip = set(head_parameter_names(model))
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if name in skip or is_adapter_parameter(name):
            continue
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        digest.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def trained_tensor_names(model: nn.Module) -> list[str]:
    """Names of what an adapter file holds: adapter parameters and the classifier head."""
    heads = set(head_parameter_names(model))
    return [n for n, _ in model.named_parameters() if n in heads or is_adapter_parameter(n)]


def save_adapters(model: nn.Module, path: str | Path, class_names: list[str] | None = None) -> Path:
    """Write adapters + head of a ``head``/``adapter`` model to ``path`` atomically."""
    method = prepared_method(model) or ("adapter" if adapter_config(model) else None)
    if method not in ("head", "adapter"):
        raise ValueError(f"save_adapters needs a model prepared with method 'head' or 'adapter', got {method!r}; "
                         "a fully fine-tuned model is saved whole by the training checkpoints")
    params = dict(model.named_parameters())
    tensors = {n: params[n].detach().to("cpu").contiguous() for n in trained_tensor_names(model)}
    cfg = adapter_config(model)
    info = backbone_info(model)
    meta = {
        "format": FORMAT, "method": method, "adapter_config": json.dumps(cfg.to_dict() if cfg else None),
        "backbone": str(info.get("name", "")), "backbone_architecture": str(info.get("architecture", "")),
        "backbone_tag": str(info.get("tag", "")), "backbone_fingerprint": backbone_fingerprint(model),
        "embed_dim": str(embed_dim(model)), "depth": str(len(transformer_blocks(model))),
        "class_names": json.dumps(list(class_names) if class_names is not None else None),
        "adaptertune_version": __version__,
    }
    return atomic_save_safetensors(tensors, path, metadata=meta)


def read_adapter_file(path: str | Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """Metadata and tensors of an adapter file; anything unreadable is a ValueError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"adapter file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:  # safetensors raises its own error types for truncation/corruption
        raise ValueError(f"{path} is not a readable safetensors adapter file (corrupt or truncated?): {err}") from err
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not an adaptertune adapter file: format={meta.get('format')!r}, expected {FORMAT!r}")
    return meta, tensors


def _expected_shapes(model: nn.Module, method: str, cfg: AdapterConfig | None) -> dict[str, tuple[int, ...]]:
    params = dict(model.named_parameters())
    shapes = {n: tuple(params[n].shape) for n in head_parameter_names(model)}
    if method == "adapter":
        dim, blocks = embed_dim(model), transformer_blocks(model)
        prefix = next(n for n, m in model.named_modules() if m is blocks)
        for i in cfg.adapted_blocks(len(blocks)):
            p = f"{prefix}.{i}.adapter"
            shapes |= {f"{p}.down.weight": (cfg.rank, dim), f"{p}.down.bias": (cfg.rank,),
                       f"{p}.up.weight": (dim, cfg.rank), f"{p}.up.bias": (dim,)}
    return shapes


def load_adapters(model: nn.Module, path: str | Path) -> nn.Module:
    """Restore a file written by :func:`save_adapters` onto ``model`` (a fresh backbone or a matching one).

    Everything is checked before anything is changed, so a refused file leaves the model as it was.
    """
    meta, tensors = read_adapter_file(path)
    method = meta["method"]
    cfg = AdapterConfig(**json.loads(meta["adapter_config"])) if json.loads(meta["adapter_config"]) else None
    have_fp, want_fp = backbone_fingerprint(model), meta["backbone_fingerprint"]
    if have_fp != want_fp:
        raise ValueError(f"{path} was trained on another backbone ({meta['backbone']!r} {meta['backbone_tag']!r}, "
                         f"fingerprint {want_fp[:12]}…) than this model (fingerprint {have_fp[:12]}…)")
    current, current_method = adapter_config(model), prepared_method(model)
    if current is not None and current != cfg:
        raise ValueError(f"{path} holds adapters {cfg} but the model has {current}")
    if current_method is not None and current_method != method:
        raise ValueError(f"{path} holds a {method!r} model but the model was prepared for {current_method!r}")
    if cfg is not None:
        dim, depth = embed_dim(model), len(transformer_blocks(model))
        if cfg.rank > dim or cfg.start >= depth:
            raise ValueError(f"{path} has rank={cfg.rank}, start={cfg.start}; this model has embed_dim={dim}, depth={depth}")
    expected = _expected_shapes(model, method, cfg)
    got = {k: tuple(v.shape) for k, v in tensors.items()}
    if got != expected:
        diff = sorted(set(got.items()) ^ set(expected.items()))[:6]
        raise ValueError(f"{path} does not fit this model (file vs model tensors differ, e.g. {diff}); "
                         "check num_classes, rank and placement")
    if current_method is None:
        prepare(model, method, **(cfg.to_dict() if cfg and current is None else {}))
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in tensors.items():
            params[name].copy_(value)
    return model
