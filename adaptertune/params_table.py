"""Tab.1: trainable parameters per backbone, counted on real timm models (built without weights)."""
from __future__ import annotations

import pandas as pd
import timm

from .backbones import MINI_BACKBONES, PAPER_BACKBONES, create_backbone
from .inject import embed_dim, transformer_blocks
from .regimes import count_parameters, expected_trainable, prepare


def parameter_row(backbone: str, num_classes: int, method: str = "adapter", rank: int = 16, every: int = 1,
                  start: int = 0) -> dict:
    """Counts on a freshly built model, beside PAPER.md's closed-form count (they must agree)."""
    options = {"rank": rank, "every": every, "start": start} if method == "adapter" else {}
    model = create_backbone(backbone, num_classes, pretrained=False)
    full_ft = count_parameters(model).total  # what full fine-tuning trains: backbone + head (the paper's denominator)
    bare = full_ft - (embed_dim(model) * num_classes + num_classes)
    prepare(model, method, **options)
    counts = count_parameters(model)
    formula = expected_trainable(len(transformer_blocks(model)), embed_dim(model), num_classes, method, rank=rank,
                                 every=every, start=start, backbone_params=bare)
    return {
        "backbone": backbone, "method": method, "rank": rank if method == "adapter" else None,
        "every": every if method == "adapter" else None, "num_classes": num_classes,
        "trainable": counts.trainable, "formula": formula, "total": counts.total, "backbone_params": bare,
        "pct_of_backbone": 100.0 * counts.trainable / bare,
        "pct_of_full_ft": 100.0 * counts.trainable / full_ft,
    }


def parameter_table(backbones: list[str] | None = None, num_classes: int = 100, ranks: tuple[int, ...] = (16,),
                    everys: tuple[int, ...] = (1, 2), methods: tuple[str, ...] = ("head", "adapter", "full")) -> pd.DataFrame:
    """One row per backbone × regime (× rank × every for adapters), as % of full FT and of the bare backbone."""
    backbones = backbones or list(PAPER_BACKBONES) + list(MINI_BACKBONES)
    rows = []
    for name in backbones:
        for method in methods:
            if method == "adapter":
                rows += [parameter_row(name, num_classes, method, r, e) for r in ranks for e in everys]
            else:
                rows.append(parameter_row(name, num_classes, method))
    return pd.DataFrame(rows).astype({"rank": "Int64", "every": "Int64"})


def timm_version() -> str:
    return timm.__version__
