"""LoRA on timm ViTs through peft, at AdapterTune's parameter budget: the baseline PEFT users ask for first.

LoRA goes on every block's fused ``attn.qkv`` and on the MLP (``mlp.fc1``, ``mlp.fc2``), with ``lora_alpha`` equal to
the rank (scale 1, like the adapters' default) and no dropout. B starts at zero, so the adapted model starts exactly at
the pretrained one, as zero-initialised adapters do. Injection is peft's ``inject_adapter_in_model``: the model stays a
timm model (no ``PeftModel`` wrapper); the frozen Linear moves to ``<name>.base_layer``, which
:func:`backbone_tensor_name` maps back so fingerprints match a fresh backbone.

The ranks are chosen per backbone so the trainable count matches AdapterTune at r=16 on every block within 5%: among
the qkv rank ``a`` and MLP rank ``b`` in 1..16 whose per-block count ``4 d a + 2 (d + h) b`` is within 5% of the
adapter's ``2 d 16 + 16 + d``, the most even pair (smallest ``|a - b|``), then the closest count, then the smaller
``a``. One shared rank cannot match (r=2 is 12-15% short, r=3 far over); ViTs with ``h = 4d`` get a=3, b=2. ``d`` is
the width, ``h`` the MLP's hidden width, ``L`` the depth; the head is the same on both sides.
"""
from __future__ import annotations

from typing import Any

from torch import nn

from .adapter import Adapter, AdapterConfig
from .inject import embed_dim, transformer_blocks

TARGETS = ("attn.qkv", "mlp.fc1", "mlp.fc2")
MARKER = ".lora_"
BASE_LAYER = ".base_layer"
OPTION_NAMES = ("qkv_rank", "mlp_rank")
_MAX_RANK = 16
TOLERANCE = 0.05  # the matched budget: within 5% of AdapterTune r=16


def mlp_hidden(model: nn.Module) -> int:
    """The MLP's hidden width (timm's ``mlp.fc1.out_features``) of the first block."""
    fc1 = getattr(getattr(transformer_blocks(model)[0], "mlp", None), "fc1", None)
    if not isinstance(fc1, nn.Linear):
        raise ValueError(f"model of type {type(model).__name__} is not supported by LoRA here: its blocks need timm's "
                         "`attn.qkv` and `mlp.fc1`/`mlp.fc2` Linear layers")
    return int(fc1.out_features)


def block_parameters(dim: int, hidden: int, qkv_rank: int, mlp_rank: int) -> int:
    """Trainable LoRA parameters of one block: qkv ``a (d + 3d)``, fc1 ``b (d + h)``, fc2 ``b (h + d)``."""
    return 4 * dim * qkv_rank + 2 * (dim + hidden) * mlp_rank


def matched_ranks(dim: int, hidden: int, adapter_rank: int = AdapterConfig.rank) -> dict[str, int]:
    """The (qkv, MLP) ranks whose per-block count is closest to an adapter of ``adapter_rank`` (module docstring)."""
    target = Adapter.num_parameters(dim, adapter_rank)
    pairs = [(a, b) for a in range(1, _MAX_RANK + 1) for b in range(1, _MAX_RANK + 1)]
    within = [ab for ab in pairs if abs(block_parameters(dim, hidden, *ab) - target) <= TOLERANCE * target]
    if not within:
        raise ValueError(f"no LoRA ranks up to {_MAX_RANK} match the adapter budget within {TOLERANCE:.0%} for "
                         f"embed_dim={dim}, mlp hidden={hidden}; pass qkv_rank and mlp_rank explicitly")
    best = min(within, key=lambda ab: (abs(ab[0] - ab[1]), abs(block_parameters(dim, hidden, *ab) - target), ab))
    return dict(zip(OPTION_NAMES, best))


def resolve_options(model: nn.Module, options: dict[str, Any]) -> dict[str, int]:
    """The ranks to use: the matched ones unless both are given; anything else is refused with the allowed keys."""
    unknown = sorted(set(options) - set(OPTION_NAMES))
    if unknown:
        raise ValueError(f"unknown LoRA option(s) {unknown}: allowed are {list(OPTION_NAMES)}")
    chosen = matched_ranks(embed_dim(model), mlp_hidden(model)) | dict(options)
    for key, value in chosen.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{key}={value!r} is not allowed: use an integer >= 1")
    return chosen


def add_lora(model: nn.Module, **options: Any) -> dict[str, int]:
    """Inject LoRA into every block's qkv and MLP in place; returns the ranks used (they go into the file)."""
    from peft import LoraConfig, inject_adapter_in_model  # peft is imported only when LoRA is used

    ranks = resolve_options(model, options)
    blocks = transformer_blocks(model)
    prefix = next(n for n, m in model.named_modules() if m is blocks)
    pattern = rf"^{prefix}\.\d+\.({'|'.join(t.replace('.', chr(92) + '.') for t in TARGETS)})$"
    a, b = ranks["qkv_rank"], ranks["mlp_rank"]
    config = LoraConfig(r=b, lora_alpha=b, rank_pattern={"qkv": a}, alpha_pattern={"qkv": a}, lora_dropout=0.0,
                        bias="none", target_modules=pattern)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    inject_adapter_in_model(config, model)
    for name, p in model.named_parameters():  # peft freezes the rest; restore what the caller had
        p.requires_grad_(flags.get(name, flags.get(name.replace(BASE_LAYER, ""), False)) or MARKER in name)
    return ranks


def is_lora_parameter(name: str) -> bool:
    return MARKER in name


def backbone_tensor_name(name: str) -> str:
    """A state-dict name as the bare timm backbone spells it (peft moves wrapped Linears under ``base_layer``)."""
    return name.replace(BASE_LAYER, "")


def lora_shapes(model: nn.Module, qkv_rank: int, mlp_rank: int) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every LoRA tensor this backbone gets with these ranks (what a LoRA file must hold)."""
    shapes: dict[str, tuple[int, ...]] = {}
    blocks = transformer_blocks(model)
    prefix = next(n for n, m in model.named_modules() if m is blocks)
    for i, block in enumerate(blocks):
        for target in TARGETS:
            layer = block.get_submodule(target)
            layer = getattr(layer, "base_layer", layer)
            rank = qkv_rank if target.endswith("qkv") else mlp_rank
            base = f"{prefix}.{i}.{target}"
            shapes[f"{base}.lora_A.default.weight"] = (rank, layer.in_features)
            shapes[f"{base}.lora_B.default.weight"] = (layer.out_features, rank)
    return shapes


__all__ = ["OPTION_NAMES", "TARGETS", "add_lora", "backbone_tensor_name", "block_parameters", "is_lora_parameter",
           "lora_shapes", "matched_ranks", "mlp_hidden", "resolve_options"]
