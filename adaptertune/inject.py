"""Putting adapters into timm models without touching the backbone's weights or key names.

Each adapted block gets a child module ``adapter`` and a forward hook that adds its residual to the
block output. The backbone's ``state_dict`` keys stay exactly as timm names them (a pretrained
checkpoint loads with ``strict=False`` and only adapter keys missing), adapter keys read
``blocks.<i>.adapter.{down,up}.{weight,bias}``, and anything that calls the blocks through
``nn.Module.__call__`` (timm's ``forward_features``, ``forward_intermediates``, grad checkpointing,
``torch.compile``) sees the adapted output.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from torch import Tensor, nn

from .adapter import Adapter, AdapterConfig

ADAPTER_ATTR = "adapter"
CONFIG_ATTR = "adapter_config"


def transformer_blocks(model: nn.Module) -> nn.Sequential | nn.ModuleList:
    """The model's ``blocks`` sequence; the timm convention shared by ViT, DeiT, EVA, BEiT, ..."""
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, (nn.Sequential, nn.ModuleList)) or len(blocks) == 0:
        raise ValueError(
            f"model of type {type(model).__name__} is not supported: adapters need a non-empty `blocks` "
            "nn.Sequential/nn.ModuleList of transformer blocks and an `embed_dim` (timm ViT/DeiT convention)"
        )
    return blocks


def embed_dim(model: nn.Module) -> int:
    dim = getattr(model, "embed_dim", None) or getattr(model, "num_features", None)
    if not isinstance(dim, int) or dim <= 0:
        raise ValueError(f"model of type {type(model).__name__} has no integer `embed_dim`; adapters need the token width")
    return dim


def with_residual(adapter: nn.Module, output: Tensor) -> Tensor:
    """A block's output with its adapter's residual added: ``h + A(h)`` (the hook here and MultiTask share it)."""
    return output + adapter(output)


def vit_tokens(model: nn.Module, images: Tensor) -> Tensor:
    """A timm VisionTransformer's tokens before its first block (patch and position embedding, patch dropout, the
    pre-norm), as its ``forward_features`` computes them; code that runs the blocks itself starts here."""
    return model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(images))))


def vit_features(model: nn.Module, tokens: Tensor) -> Tensor:
    """The pooled, normed features the head reads, from the last block's tokens (timm's ``forward_head``)."""
    return model.forward_head(model.norm(tokens), pre_logits=True)


def _add_adapter_residual(module: nn.Module, args: tuple, output: Tensor) -> Tensor:
    if not isinstance(output, Tensor):
        raise TypeError(f"adapted block {type(module).__name__} returned {type(output).__name__}; expected a token tensor")
    return with_residual(getattr(module, ADAPTER_ATTR), output)


def adapter_config(model: nn.Module) -> AdapterConfig | None:
    """The config the model's adapters were built with, or None for a model without adapters."""
    return getattr(model, CONFIG_ATTR, None)


def adapter_modules(model: nn.Module) -> dict[int, Adapter]:
    """Block index -> adapter, for the adapted blocks only."""
    blocks = transformer_blocks(model)
    return {i: getattr(b, ADAPTER_ATTR) for i, b in enumerate(blocks) if isinstance(getattr(b, ADAPTER_ATTR, None), Adapter)}


def add_adapters(model: nn.Module, config: AdapterConfig | None = None, **options: Any) -> nn.Module:
    """Wrap blocks ``start, start+every, ...`` of ``model`` in place and return it.

    ``config`` (default ``AdapterConfig()``: the paper's r=16 on every block, zero init) with any of its fields
    overridden by keyword (``rank=8, every=2``). ``start`` (beyond the paper; default 0) leaves the lower
    blocks unadapted so backward stops above them.
    """
    if config is not None and not isinstance(config, AdapterConfig):
        raise TypeError(f"config={config!r} is not allowed: pass an AdapterConfig, or the fields by keyword (rank=16, ...)")
    unknown = sorted(set(options) - set(AdapterConfig.field_names()))
    if unknown:
        raise ValueError(f"unknown adapter option(s) {unknown}: allowed are {list(AdapterConfig.field_names())}")
    cfg = replace(config or AdapterConfig(), **options)
    rank = cfg.rank
    blocks = transformer_blocks(model)
    dim = embed_dim(model)
    if adapter_config(model) is not None or any(hasattr(b, ADAPTER_ATTR) for b in blocks):
        raise ValueError(
            f"model already has adapters ({adapter_config(model)}); add_adapters may be called once per model"
        )
    if rank > dim:
        raise ValueError(f"rank={rank} is not allowed for embed_dim={dim}: use 1 <= rank <= {dim}")
    indices = cfg.adapted_blocks(len(blocks))
    ref = next(model.parameters(), None)
    for i in indices:
        adapter = cfg.build(dim)
        if ref is not None:
            adapter.to(device=ref.device, dtype=ref.dtype)
        blocks[i].add_module(ADAPTER_ATTR, adapter)
        blocks[i].register_forward_hook(_add_adapter_residual)
    setattr(model, CONFIG_ATTR, cfg)
    return model


def is_adapter_parameter(name: str) -> bool:
    return f".{ADAPTER_ATTR}." in f".{name}"
