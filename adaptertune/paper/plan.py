"""How long a profile's missing runs will take: a rough estimate from dataset sizes and training throughput.

The throughput priors below are used only until the store holds measured runs of a backbone: GPU figures for
the paper backbones (fp32, one A100/H100-class GPU, batch 128), CPU figures measured on the 2-core machine for
the mini ones. Evaluation passes are counted at 3× these rates. Dataset sizes come from the data registry.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..config import RunConfig
from ..data import DATASETS
from ..profiles import profile_record
from ..regimes import regime
from ..store import runs as store
from . import experiments

THROUGHPUT = {
    "vit_small_patch16_224": {"full": 1200, "adapter": 1400, "head": 3600},
    "vit_base_patch16_224": {"full": 420, "adapter": 500, "head": 1300},
    "deit_tiny_patch16_224": {"full": 2600, "adapter": 3000, "head": 7000},
    "mini-s": {"full": 2000, "adapter": 2300, "head": 6500},
    "mini-b": {"full": 900, "adapter": 1200, "head": 2800},
}
DEFAULT_SIZES = (20000, 5000)  # a user's folder dataset, whose size the registry does not know


def measured_throughput(frame: pd.DataFrame) -> dict[tuple[str, str, str], float]:
    """(profile, backbone, method) -> median measured training images/s of finished runs in the store."""
    if frame.empty or "train_images_per_s" not in frame:
        return {}
    good = frame.dropna(subset=["train_images_per_s"])
    return good.groupby(["profile", "backbone", "method"])["train_images_per_s"].median().to_dict()


def estimate_seconds(cfg: RunConfig, measured: dict | None = None) -> float:
    """Rough wall time of one run: epochs × train images / throughput, plus val/test/train-eval passes."""
    prior = THROUGHPUT.get(cfg.backbone, {})
    rate = ((measured or {}).get((cfg.profile, cfg.backbone, cfg.method)) or prior.get(cfg.method)
            or prior.get(regime(cfg.method).speed_like, 500))
    spec = DATASETS.get(cfg.dataset)
    train, test = (spec.train_size, spec.test_size) if spec is not None else DEFAULT_SIZES
    if cfg.limit:
        train, test = min(train, cfg.limit), min(test, cfg.limit)
    fit = train * (1 - cfg.val_fraction)
    evaluated = cfg.epochs * train * cfg.val_fraction + test + min(cfg.train_eval_limit, fit)
    return cfg.epochs * fit / rate + evaluated / (3 * rate) + 2.0  # + model/data set-up


def plan_frame(profile: str, root: str | Path | None = None) -> pd.DataFrame:
    """Every run of the profile with its status and estimated seconds; tuned runs whose learning rate is not chosen
    yet are counted with a stand-in rate (``status`` "projected")."""
    settled = experiments.settled_runs(root)
    table = experiments.plan(profile, runs=settled)
    configs = {c.run_id: c for c in experiments.all_configs(profile, runs=settled)}
    configs |= {c.run_id: c for name in experiments.GRIDS
                for c in experiments.grid(name, profile, settled, assume_pending=True)}
    measured = measured_throughput(settled[settled["status"] == "finished"])
    table["status"] = ["projected" if projected else store.run_status(rid, root)
                       for rid, projected in zip(table["run_id"], table["projected"])]
    table["est_s"] = [estimate_seconds(configs[rid], measured) for rid in table["run_id"]]
    return table


def describe_plan(profile: str, table: pd.DataFrame) -> str:
    todo = table[table["status"] != "finished"]
    secs = todo["est_s"].sum()
    on_gpu = profile_record(profile).on_gpu
    unit = "GPU-hours" if on_gpu else "CPU time"
    amount = f"{secs / 3600:.1f} GPU-hours" if on_gpu else f"~{secs / 60:.1f} min"
    by_grid = {g: int(table["grids"].str.split(",").map(lambda gs: g in gs).sum()) for g in experiments.GRIDS}
    projected = int((table["status"] == "projected").sum())
    return (f"[suite] profile {profile}: {len(table)} runs ({', '.join(f'{g} {n}' for g, n in by_grid.items() if n)}; "
            f"shared runs counted once), {int((table['status'] == 'finished').sum())} finished, {len(todo)} to train"
            + (f" ({projected} of them tuned-protocol runs whose learning rate is chosen on the way)" if projected else "")
            + f"; estimated {unit} for the missing runs: {amount}")


__all__ = ["THROUGHPUT", "describe_plan", "estimate_seconds", "measured_throughput", "plan_frame"]
