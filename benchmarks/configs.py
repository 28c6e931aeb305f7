"""What is benchmarked: backbones with their input size and default batch, and the training regimes.

Regimes are described by data (method, every, start fraction) rather than code so the same list drives the
in-process timing, the per-configuration memory subprocess and the report.
"""
from __future__ import annotations

import importlib.util
import re
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

import adaptertune as at
from adaptertune.inject import transformer_blocks
from adaptertune.recompute import recompute_frozen_mlps

# Alias -> default batch size. Mini backbones at their training batch; the ViTs small enough that one full
# fine-tuning step takes a few seconds on 2 CPU cores (ViT-S at 32 is the batch of the memory target).
DEFAULT_BATCH: dict[str, int] = {"mini-s": 128, "mini-b": 128, "vit-s16": 32, "vit-b16": 8}
GPU_BATCH: dict[str, int] = {"mini-s": 512, "mini-b": 512, "vit-s16": 128, "vit-b16": 64}
LORA_TARGETS = r"blocks\.\d+\.(attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)"  # not patch_embed.proj
NUM_CLASSES = 10


@dataclass(frozen=True)
class Regime:
    """One way of training the same backbone. ``start_num/start_den`` place the first adapter at ``L*num//den``."""

    name: str
    method: str  # "head", "full", "adapter" or "lora"
    every: int = 1
    start_num: int = 0
    start_den: int = 1
    recompute: float = 0.0  # share of the frozen MLPs adaptertune.recompute_frozen_mlps recomputes (memory for time)

    def start(self, depth: int) -> int:
        return depth * self.start_num // self.start_den

    def to_dict(self) -> dict:
        return asdict(self)


REGIMES: tuple[Regime, ...] = (
    Regime("head", "head"),
    Regime("full", "full"),
    Regime("adapter", "adapter"),
    Regime("adapter-recompute", "adapter", recompute=1.0),
    Regime("adapter-recompute-half", "adapter", recompute=0.5),
    Regime("adapter-every2", "adapter", every=2),
    Regime("adapter-startL/2", "adapter", start_num=1, start_den=2),
    Regime("adapter-start3L/4", "adapter", start_num=3, start_den=4),
    Regime("lora", "lora"),
)
REGIME_BY_NAME = {r.name: r for r in REGIMES}
RECOMPUTE_REGIMES: tuple[str, ...] = tuple(r.name for r in REGIMES if r.recompute)


def peft_available() -> bool:
    """LoRA needs peft (the ``bench`` extra); without it the default regimes leave LoRA out."""
    return importlib.util.find_spec("peft") is not None


def default_regimes() -> list[str]:
    return [r.name for r in REGIMES if r.method != "lora" or peft_available()]
# Inference is timed for the unmodified model and the models that change the forward pass.
INFERENCE_MODELS: tuple[str, ...] = ("bare", "adapter", "lora")


def input_shape(model: nn.Module) -> tuple[int, ...]:
    return tuple(model.pretrained_cfg["input_size"])


def fixed_batch(model: nn.Module, batch: int, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """The benchmark's input: one seeded random batch at the model's input size, the same in every process."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, *input_shape(model), generator=gen)
    y = torch.randint(0, model.num_classes, (batch,), generator=gen)
    return x.to(device), y.to(device)


def lora_count(model: nn.Module, rank: int, pattern: str = LORA_TARGETS) -> int:
    """Trainable LoRA parameters for ``rank``: ``r * (in + out)`` per targeted Linear (A is r×in, B is out×r)."""
    return sum(rank * (m.in_features + m.out_features) for name, m in model.named_modules()
               if isinstance(m, nn.Linear) and re.fullmatch(pattern, name))


def match_lora_rank(model: nn.Module, target: int, max_rank: int = 64) -> int:
    """The LoRA rank whose trainable count (head excluded) is closest to ``target``."""
    return min(range(1, max_rank + 1), key=lambda r: (abs(lora_count(model, r) - target), r))


def add_lora(model: nn.Module, rank: int) -> nn.Module:
    """peft LoRA on qkv/proj/fc1/fc2 of every block, backbone frozen, the classifier head trainable."""
    from peft import LoraConfig, inject_adapter_in_model  # optional: the `bench` extra

    config = LoraConfig(r=rank, lora_alpha=rank, lora_dropout=0.0, target_modules=LORA_TARGETS, bias="none")
    model = inject_adapter_in_model(config, model)
    for name, p in model.named_parameters():
        p.requires_grad_("lora_" in name)
    for p in model.get_classifier().parameters():
        p.requires_grad_(True)
    return model


def unscaled_residual(module: nn.Module, args: tuple, output: Tensor) -> Tensor:
    """Proposed adapter hook body: ``h + A(h)`` without the ``* scale`` pass when scale == 1 (bit-identical)."""
    a = module.adapter
    z = a.up(a.act(a.down(output)))
    return output + z if a.scale == 1.0 else output.add(z, alpha=a.scale)


def _use_unscaled_hook(model: nn.Module) -> None:
    for block in transformer_blocks(model):
        if hasattr(block, "adapter"):
            block._forward_hooks.clear()  # benchmark-only monkeypatch of the core's hook
            block.register_forward_hook(unscaled_residual)


VARIANTS = {"unscaled-hook": _use_unscaled_hook, "recompute-mlp": recompute_frozen_mlps}


def build(backbone: str, regime: str, rank: int = 16, lora_rank: int | None = None,
          device: torch.device | str = "cpu", variant: str | None = None) -> nn.Module:
    """A freshly initialised model for ``regime`` (``bare``: the unmodified timm model); weights are random on purpose.

    ``variant`` applies a benchmark-only change from :data:`VARIANTS` (used by ``ablations.py``), never by default.
    """
    model = at.create_backbone(backbone, NUM_CLASSES, pretrained=False)
    if regime == "bare":
        return model.to(device).eval()
    r = REGIME_BY_NAME[regime]
    if r.method == "lora":
        depth, dim = len(transformer_blocks(model)), model.embed_dim
        if lora_rank is None:
            lora_rank = match_lora_rank(model, depth * at.Adapter.num_parameters(dim, rank))
        add_lora(model, lora_rank)
    elif r.method == "adapter":
        at.prepare(model, "adapter", rank=rank, every=r.every, start=r.start(len(transformer_blocks(model))))
        if r.recompute:
            recompute_frozen_mlps(model, fraction=r.recompute)
    else:
        at.prepare(model, r.method)
    if variant is not None:
        VARIANTS[variant](model)
    return model.to(device).train()
