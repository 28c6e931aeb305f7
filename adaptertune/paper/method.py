"""Notebook 01's computations: the identity of a zero-initialised adapted ViT at step 0, and Tab.1 (trainable
parameters per backbone, counted on real timm models built without weights)."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from ..adapter import AdapterConfig
from ..backbones import MINI_BACKBONES, PAPER_BACKBONES, create_backbone
from ..inject import adapter_modules
from ..regimes import count_parameters, methods as registered, model_shape, prepare, regime, regime_options


@dataclass(frozen=True)
class IdentityCheck:
    """One backbone's outputs with and without freshly injected adapters, on the same seeded weights and images."""

    backbone: str
    adapted_blocks: tuple[int, ...]
    trainable: int
    max_delta_zero: float
    equal_zero: bool
    max_delta_random: float
    equal_random: bool

    def summary(self) -> str:
        return (f"{self.backbone}: adapters in blocks {list(self.adapted_blocks)}; trainable {self.trainable:,}\n"
                f"zero init:   max |Δ| = {self.max_delta_zero:.3g}, torch.equal = {self.equal_zero}\n"
                f"random init: max |Δ| = {self.max_delta_random:.3g}, torch.equal = {self.equal_random}")


def identity_at_init(backbone: str, num_classes: int = 10, *, pretrained: bool = False, images: int = 4, seed: int = 0,
                     **adapter_options) -> IdentityCheck:
    """The same seeded weights three times — plain, with zero-initialised adapters, with small random ``W_up`` — on
    the same seeded images (the backbone's own input size), compared output for output."""
    def build(options: dict | None) -> torch.nn.Module:
        torch.manual_seed(seed)
        model = create_backbone(backbone, num_classes, pretrained=pretrained).eval()
        return model if options is None else prepare(model, "adapter", **options)

    plain, zero = build(None), build(adapter_options)
    rand = build({**adapter_options, "init": "random"})
    x = torch.randn(images, *plain.pretrained_cfg["input_size"], generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        before, after_zero, after_random = plain(x), zero(x), rand(x)
    return IdentityCheck(backbone, tuple(sorted(adapter_modules(zero))), count_parameters(zero).trainable,
                         (after_zero - before).abs().max().item(), torch.equal(before, after_zero),
                         (after_random - before).abs().max().item(), torch.equal(before, after_random))


def parameter_row(backbone: str, num_classes: int, method: str = "adapter", rank: int = AdapterConfig.rank,
                  every: int = AdapterConfig.every, start: int = AdapterConfig.start) -> dict:
    """Counts on a freshly built model, beside the regime record's closed-form count (they must agree). Built on the
    meta device: counting needs shapes, not weights (allocating and initialising 33 ViTs took most of notebook 01)."""
    kind = regime(method)
    options = {"rank": rank, "every": every, "start": start} if kind.adapter_options else {}
    with torch.device("meta"):
        model = create_backbone(backbone, num_classes, pretrained=False)
        full_ft = count_parameters(model).total  # full fine-tuning trains backbone + head (the paper's denominator)
        shape = model_shape(model)
        bare = shape.backbone_params
        prepare(model, method, **options)
    counts = count_parameters(model)
    chosen = regime_options(model)  # LoRA's matched ranks
    return {
        "backbone": backbone, "method": method, "rank": rank if kind.adapter_options else None,
        "every": every if kind.adapter_options else None,
        "options": ", ".join(f"{k}={v}" for k, v in chosen.items()) or None, "num_classes": num_classes,
        "trainable": counts.trainable, "formula": kind.expected(shape, **options, **chosen), "total": counts.total,
        "backbone_params": bare,
        "pct_of_backbone": 100.0 * counts.trainable / bare,
        "pct_of_full_ft": 100.0 * counts.trainable / full_ft,
    }


def parameter_table(backbones: list[str] | None = None, num_classes: int = 100,
                    ranks: tuple[int, ...] = (AdapterConfig.rank,),
                    everys: tuple[int, ...] = (1, 2), methods: tuple[str, ...] | None = None) -> pd.DataFrame:
    """One row per backbone × regime (× rank × every for adapters), as % of full FT and of the bare backbone; every
    registered regime unless ``methods`` (LoRA at AdapterTune r=16's budget: both counts side by side)."""
    backbones = backbones or list(PAPER_BACKBONES) + list(MINI_BACKBONES)
    rows = []
    for name in backbones:
        for method in methods or registered():
            if regime(method).adapter_options:
                rows += [parameter_row(name, num_classes, method, r, e) for r in ranks for e in everys]
            else:
                rows.append(parameter_row(name, num_classes, method))
    return pd.DataFrame(rows).astype({"rank": "Int64", "every": "Int64"})



__all__ = ["IdentityCheck", "identity_at_init", "parameter_row", "parameter_table"]
