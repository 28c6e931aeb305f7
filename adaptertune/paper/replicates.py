"""The backbones as replicates: which backbones there are, and how much of a cell's spread is the pretraining run.

``backbones_table`` lists every mini backbone of a profile from the provenance JSON beside its weights (family,
pretraining seed, snapshot epoch, shape, size, source accuracy), so Tab.2 can be read against the quality of what
it adapts. ``variance_components`` splits a Tab.2 cell's spread: between pretraining runs (each replicate with its own
training seed, the main comparison's unit) against between training seeds on one backbone (the ``seeds`` grid).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..backbones import backbone_shape, create_backbone, mini_variant, mini_weights_dir
from .tables import method_label

BACKBONE_COLUMNS = ["backbone", "family", "pretraining_seed", "replicate", "snapshot_epoch", "pretraining_epochs",
                    "depth", "width", "params", "source_val_acc", "linear_probe_source_acc"]


def _params(name: str) -> int:
    """Parameters of the bare backbone (no head), counted on a randomly initialised copy (the mini ones are tiny)."""
    model = create_backbone(name, 1, pretrained=False)
    head = sum(p.numel() for p in model.get_classifier().parameters())
    return int(sum(p.numel() for p in model.parameters()) - head)


def backbone_row(meta_path: Path, probes: dict[str, float] | None = None) -> dict:
    """One backbone from its provenance JSON (``<name>.json`` beside ``<name>.safetensors``); accuracies in %."""
    meta = json.loads(meta_path.read_text())
    name = meta.get("name", meta_path.stem)
    family, kind, number = mini_variant(name)
    depth, width = backbone_shape(name)
    epochs = meta.get("epochs")
    recipe = meta.get("recipe") or {}
    probe = (probes or {}).get(name)
    return {"backbone": name, "family": family, "pretraining_seed": recipe.get("seed"),
            "replicate": number if kind == "p" else 0,
            "snapshot_epoch": number if kind == "e" else meta.get("epoch", epochs),
            "pretraining_epochs": epochs, "depth": depth, "width": width, "params": _params(name),
            "source_val_acc": 100 * float(meta["source_val_acc"]) if meta.get("source_val_acc") is not None else np.nan,
            "linear_probe_source_acc": 100 * probe if probe is not None else np.nan}


def backbones_table(profile: str, probes: dict[str, float] | None = None, where: Path | None = None) -> pd.DataFrame:
    """Every backbone whose weights and provenance lie in ``data/backbones/<profile>/`` (or ``where``), by family,
    replicate and epoch; ``probes`` (name -> linear-probe source accuracy, a fraction) fills its column."""
    folder = Path(where) if where is not None else mini_weights_dir(profile)
    metas = sorted(p for p in folder.glob("*.json") if p.with_suffix(".safetensors").is_file()) \
        if folder.is_dir() else []
    rows = [backbone_row(p, probes) for p in metas]
    table = pd.DataFrame(rows, columns=BACKBONE_COLUMNS)
    return table.sort_values(["family", "replicate", "snapshot_epoch"], ignore_index=True)


def probe_points(table: pd.DataFrame) -> list[tuple[str, bool]]:
    """The ``(backbone, pretrained)`` points of a backbones table, to measure with ``analysis.linear_probes``."""
    return [(str(b), True) for b in table["backbone"]]


def with_probes(table: pd.DataFrame, probes: dict[tuple[str, bool], float]) -> pd.DataFrame:
    """The backbones table with its linear-probe column filled from ``probes`` (fractions; pretrained points)."""
    found = {b: 100 * acc for (b, pretrained), acc in probes.items() if pretrained}
    return table.assign(linear_probe_source_acc=table["backbone"].map(found).astype(float))


def _sd(values: pd.Series) -> float:
    return float(values.std(ddof=1)) if len(values) > 1 else math.nan


def variance_components(*frames: pd.DataFrame, metric: str = "test_acc") -> pd.DataFrame:
    """Per (dataset, family, regime): the sd (points) over pretraining replicates (seed s on replicate s) beside the
    sd over training seeds on the base backbone (replicate 0), each with its n, and the pretraining run's own share
    ``sqrt(max(0, var_backbones − var_seeds))`` (a run on replicate s carries both kinds of noise).

    ``frames``: the main comparison's runs of one protocol and the ``seeds`` grid's (with ``family`` and
    ``replicate`` columns); a cell without both kinds of spread shows NaN where one is missing.
    """
    if not frames:
        raise ValueError("variance components need at least one results frame")
    runs = pd.concat(frames, ignore_index=True)
    runs = runs.drop_duplicates("run_id") if "run_id" in runs.columns else runs  # a run in both grids counts once
    missing = [c for c in ("family", "replicate") if c not in runs.columns]
    if missing:
        raise ValueError(f"variance components need the results frame's {missing} column(s); it has "
                         f"{list(runs.columns)}")
    rows = []
    for (dataset, family, method), part in runs.groupby(["dataset", "family", "method"], sort=True):
        replicate, seed = part["replicate"].astype(int), part["seed"].astype(int)
        across_backbones = part[replicate == seed].groupby("seed")[metric].mean()
        across_seeds = part[replicate == 0].groupby("seed")[metric].mean()
        sd_b, sd_s = 100 * _sd(across_backbones), 100 * _sd(across_seeds)
        share = math.sqrt(max(0.0, sd_b ** 2 - sd_s ** 2)) if not (math.isnan(sd_b) or math.isnan(sd_s)) else math.nan
        rows.append({"dataset": dataset, "family": family, "regime": method_label(method),
                     "sd_over_backbones": sd_b, "n_backbones": len(across_backbones),
                     "sd_over_seeds": sd_s, "n_seeds": len(across_seeds), "sd_pretraining": share})
    return pd.DataFrame(rows, columns=["dataset", "family", "regime", "sd_over_backbones", "n_backbones",
                                       "sd_over_seeds", "n_seeds", "sd_pretraining"])


__all__ = ["BACKBONE_COLUMNS", "backbone_row", "backbones_table", "probe_points", "variance_components", "with_probes"]
