"""How long a profile's runs take: a cost model from dataset sizes, training throughput, precision and decode cost.

A run trains at the slower of the GPU and its data path and evaluates at the slower of the model's inference rate and
the PIL path. Where the numbers come from, most trusted first: medians of finished runs in the store (per profile,
backbone and regime); a ``make gpu-check`` folder measured on a lent GPU (:mod:`.gpu_calibration`: training and
evaluation images/s per backbone, regime and precision, decode images/s per worker); the priors below, each stated once
(one H100-class GPU, batch 128, fp32 strict; a speed-up per precision; decode per core; evaluation at 3x training), for
what was not measured. CPU figures for the mini backbones were measured on the 2-core machine.
``python -m adaptertune.paper.plan --profile paper`` prints the GPU-hours of the main tables, the ablations and the whole paper on 1 and on 8 GPUs and writes them to
``figures/tables/paper/plan.md`` (README and docs include that file: no typed figure).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..atomic import atomic_write_bytes
from ..config import PROFILES, RunConfig
from ..data import DATASETS
from ..data.registry import IN_MEMORY_SETS, JPEG_SETS
from ..paths import home
from ..profiles import profile_record
from ..regimes import regime
from ..store import runs as run_store
from ..training.sweep import shard_of
from . import experiments
from .gpu_calibration import Calibration, load_calibration
from .protocols import precision_of

# Training images/s, fp32 strict (TF32 off), batch 128, one H100-class GPU (paper) or the 2-core machine (mini).
THROUGHPUT = {
    "vit_small_patch16_224": {"full": 1200, "adapter": 1400, "head": 3600},
    "vit_base_patch16_224": {"full": 420, "adapter": 500, "head": 1300},
    "deit_tiny_patch16_224": {"full": 2600, "adapter": 3000, "head": 7000},
    "mini-s": {"full": 2000, "adapter": 2300, "head": 6500},
    "mini-b": {"full": 900, "adapter": 1200, "head": 2800},
}
# GPU speed-up over strict fp32 (tensor-core matmuls; attention and MLPs dominate a ViT step). CPU: none.
PRECISION_SPEEDUP = {"fp32": 1.0, "tf32": 1.8, "bf16": 2.6}
# How each paper dataset reaches the GPU (the registry's lists): "memory" = small uint8 images held as one tensor
# (CIFAR, SVHN, Tiny-ImageNet: cropped in batches on the device, data.device_path), "jpeg" = full-size JPEG files
# decoded per image by PIL (from the pre-resized copy once `prepare` has written it, data.jpeg_cache).
DATA_FORMAT = {**{name: "memory" for name in IN_MEMORY_SETS}, **{name: "jpeg" for name in JPEG_SETS}}
# Images/s one CPU core decodes + random-resized-crops + flips to 224 px: PIL on the original files ("jpeg"), on files
# stored once pre-resized to a shorter side of 256 ("jpeg_cached"), PIL on a 32-64 px in-memory image ("memory").
DECODE_PER_CORE = {"jpeg": 110, "jpeg_cached": 330, "memory": 900}
DEVICE_AUGMENT_RATE = 40000  # images/s of batched crop + flip on the GPU: never the bottleneck
CORES_PER_GPU = 12  # a typical 8-GPU node has 96-128 cores
SETUP_S = {"paper": 30.0, "mini": 2.0, "smoke": 2.0}  # model + data set-up per run
GROUPS = {  # the parts of the paper a plan reports, by grid
    "main tables": ("main", "tuned", "selection", "extended"),
    "ablations": ("rank", "placement", "init", "sensitivity"),
    "controls": ("theory", "scratch", "budget", "dose", "backbone_seed", "multitask"),
}


@dataclass(frozen=True)
class Scenario:
    """One way of running the grids: numerics and data path (the plan compares the default before #16 with today's
    code, whose JPEG sets read the pre-resized cache only once ``prepare`` has written it)."""

    name: str
    precision: str | None  # None: each run's own (the profile's recipe)
    workers: int  # decode processes per GPU (0: the training process decodes)
    device_augment: bool  # in-memory sets cropped on the GPU
    jpeg_cache: bool  # JPEG sets stored once pre-resized
    val_replay: bool = True  # validation decoded in the first epoch only, replayed after it (data.val_replay)


SCENARIOS = (
    Scenario("fp32, 0 workers (before #16)", "fp32", 0, False, False, val_replay=False),
    Scenario("recipe precision, warm workers, device crops, original JPEGs (now, no prepare)", None,
             CORES_PER_GPU - 1, True, False),
    Scenario("+ JPEG cache (now, after prepare)", None, CORES_PER_GPU - 1, True, True),
)
CURRENT = SCENARIOS[-1]  # the code as it stands, run as documented (prepare first): estimate_seconds' default
DEFAULT_SIZES = (20000, 5000)  # a user's folder dataset, whose size the registry does not know


def measured_throughput(frame: pd.DataFrame) -> dict[tuple[str, str, str], float]:
    """(profile, backbone, method) -> median measured training images/s of finished runs in the store."""
    if frame.empty or "train_images_per_s" not in frame:
        return {}
    good = frame.dropna(subset=["train_images_per_s"])
    return good.groupby(["profile", "backbone", "method"])["train_images_per_s"].median().to_dict()


def data_rate(dataset: str, scenario: Scenario, calibration: Calibration | None = None, train: bool = True) -> float:
    """Images/s the data path delivers to one GPU for ``dataset`` in ``scenario`` (inf for the mini sets: tensors).
    Decode rates per worker are the calibration's where measured. Evaluation (``train=False``) always takes the PIL
    path: only training crops are done on the device."""
    decode = {**DECODE_PER_CORE, **(calibration.decode_per_core if calibration else {})}
    fmt = DATA_FORMAT.get(dataset)
    if fmt is None:
        return float("inf") if dataset in DATASETS and DATASETS[dataset].kind == "mini" else \
            decode["jpeg"] * max(1, scenario.workers)
    if fmt == "memory" and scenario.device_augment and train:
        return (calibration.device_augment if calibration and calibration.device_augment else DEVICE_AUGMENT_RATE)
    per_core = decode["jpeg_cached" if fmt == "jpeg" and scenario.jpeg_cache else fmt]
    return per_core * max(1, scenario.workers)


def _model_rates(cfg: RunConfig, precision: str, calibration: Calibration | None) -> tuple[float, float]:
    """(training, evaluation) images/s of the model alone on one GPU: measured where the calibration has the cell,
    else the fp32 prior times the precision's speed-up (evaluation at 3x training)."""
    methods_like = (cfg.method, regime(cfg.method).speed_like)
    if calibration is not None:
        for method in methods_like:
            train = calibration.train_rate(cfg.backbone, method, precision)
            if train is not None:
                return train, calibration.eval_rate(cfg.backbone, method, precision) or 3 * train
    prior = THROUGHPUT.get(cfg.backbone, {})
    train = (prior.get(cfg.method) or prior.get(methods_like[1], 500)) * PRECISION_SPEEDUP[precision]
    return train, 3 * train


def estimate_seconds(cfg: RunConfig, measured: dict | None = None, scenario: Scenario | None = None,
                     calibration: Calibration | None = None) -> float:
    """Wall time of one run: epochs x train images at the slower of the model and the data path, plus val/test/
    train-eval passes at the slower of the model's evaluation rate and the PIL path (validation after the first epoch
    at the model's rate where the scenario replays it), plus set-up. A measured median of the store replaces the
    model's rates for that backbone and regime (it includes the data path it ran with)."""
    rate = (measured or {}).get((cfg.profile, cfg.backbone, cfg.method))
    eval_rate = replay_rate = None if rate is None else 3 * rate
    if rate is None:
        if profile_record(cfg.profile).on_gpu:
            scenario = scenario or CURRENT
            precision = scenario.precision or cfg.precision
            model, model_eval = _model_rates(cfg, precision, calibration)
            rate = min(model, data_rate(cfg.dataset, scenario, calibration))
            eval_rate = min(model_eval, data_rate(cfg.dataset, scenario, calibration, train=False))
            replay_rate = model_eval if scenario.val_replay else eval_rate
        else:
            rate, eval_rate = _model_rates(cfg, "fp32", None)
            replay_rate = eval_rate
    spec = DATASETS.get(cfg.dataset)
    train, test = (spec.train_size, spec.test_size) if spec is not None else DEFAULT_SIZES
    if cfg.limit:
        train, test = min(train, cfg.limit), min(test, cfg.limit)
    fit, val = train * (1 - cfg.val_fraction), train * cfg.val_fraction
    decoded = val + test + min(cfg.train_eval_limit, fit)  # validation in the first epoch, test and train-eval once
    return (cfg.epochs * fit / rate + decoded / eval_rate + (cfg.epochs - 1) * val / replay_rate
            + SETUP_S.get(cfg.profile, 2.0))


def plan_frame(profile: str, root: str | Path | None = None, calibration: Calibration | None = None) -> pd.DataFrame:
    """Every run of the profile with its status and estimated seconds; tuned runs whose learning rate is not chosen
    yet are counted with a stand-in rate (``status`` "projected"). ``calibration``: default the checkout's measured
    GPU (:func:`.gpu_calibration.load_calibration`)."""
    calibration = calibration or load_calibration()
    settled = experiments.settled_runs(root)
    table = experiments.plan(profile, runs=settled)
    configs = {c.run_id: c for c in experiments.all_configs(profile, runs=settled)}
    configs |= {c.run_id: c for name in experiments.GRIDS
                for c in experiments.grid(name, profile, settled, assume_pending=True)}
    measured = measured_throughput(settled[settled["status"] == "finished"])
    table["status"] = ["projected" if projected else run_store.run_status(rid, root)
                       for rid, projected in zip(table["run_id"], table["projected"])]
    table["est_s"] = [estimate_seconds(configs[rid], measured, calibration=calibration) for rid in table["run_id"]]
    for k, scenario in enumerate(SCENARIOS):
        table[f"est_s_{k}"] = [estimate_seconds(configs[rid], measured, scenario, calibration) for rid in table["run_id"]]
    table.attrs["calibration"] = calibration  # what the estimates used: the report states it without reading it again
    return table


def _in_group(table: pd.DataFrame, grids: tuple[str, ...]) -> pd.Series:
    return table["grids"].str.split(",").map(lambda gs: any(g in grids for g in gs))


def gpu_hours(table: pd.DataFrame, column: str, gpus: int) -> float:
    """Wall-clock hours on ``gpus`` GPUs: one shard process per GPU, runs split by the hash of their run id (as
    ``sweep --shard i/n`` splits them), so the busiest shard decides. Tuned runs wait for their selection round,
    which this ignores (their cells are many: the rounds overlap across cells)."""
    shards = table["run_id"].map(lambda rid: shard_of(rid, gpus))
    return float(table.groupby(shards)[column].sum().max() / 3600) if len(table) else 0.0


def plan_report(profile: str, table: pd.DataFrame, calibration: Calibration | None = None) -> str:
    """The modelled hours of each part of the paper (each run counted in the first part that uses it) and of the
    whole, on 1 and on 8 GPUs, per scenario, as a markdown table with the model's assumptions and measurements (the
    calibration ``table`` was estimated with, kept by :func:`plan_frame`; else the checkout's)."""
    calibration = calibration or table.attrs.get("calibration") or load_calibration()
    rows, seen = [], pd.Series(False, index=table.index)
    parts = [(name, _in_group(table, grids)) for name, grids in GROUPS.items()]
    for name, mask in parts + [("whole paper", pd.Series(True, index=table.index))]:
        part = table[mask & ~seen] if name != "whole paper" else table
        if name != "whole paper":
            seen |= mask
        row = {"part": name, "runs": len(part)}
        for k, scenario in enumerate(SCENARIOS):
            for gpus in (1, 8):
                row[f"{scenario.name} · {gpus} GPU"] = round(gpu_hours(part, f"est_s_{k}", gpus), 1)
        rows.append(row)
    frame = pd.DataFrame(rows)
    recipe = precision_of(profile)
    measured = (calibration.describe() + "; what it does not cover from the priors" if calibration else
                "Nothing measured on a GPU yet (no `make gpu-check` folder): all rates are priors")
    notes = (f"Modelled hours (wall clock; on 8 GPUs: one shard process per GPU, runs split by run-id hash) for profile "
             f"`{profile}`, every run of its grids (tuned runs not yet chosen counted at a stand-in rate); a run shared "
             f"by several parts counts in the first. Recipe precision: {recipe}. {measured} (`adaptertune.paper.plan`): "
             f"fp32 training images/s per backbone and regime on one H100-class GPU {THROUGHPUT_NOTE}; precision "
             f"speed-ups {PRECISION_SPEEDUP}; decode images/s per core {DECODE_PER_CORE}; evaluation at 3x the training "
             f"rate. {CORES_PER_GPU} cores per GPU ({CORES_PER_GPU - 1} decode workers); {SETUP_S.get(profile, 2.0):g} s "
             "set-up per run; evaluation batches decoded on the CPU (PIL), the validation split's only in the first epoch "
             "(replayed from then on, `data.val_replay`), training crops of the in-memory sets on the GPU.")
    if calibration:
        notes += ("\n\nMeasured training images/s used (batch 128, eager; `" + calibration.source + "`):\n\n"
                  + calibration.table().to_markdown(index=False, floatfmt=".0f"))
    return frame.to_markdown(index=False) + "\n\n" + notes + "\n\n" + main_breakdown(table) + "\n"


GPU_DAY_HOURS = 24.0  # the goal the main tables are measured against: one GPU for one day


def main_breakdown(table: pd.DataFrame) -> str:
    """Where the main tables' hours go (today's scenario): each of their grids (a run counted in the first grid that
    uses it), cumulatively, against one GPU-day — so a reader sees which protocol choice decides whether it fits."""
    k = SCENARIOS.index(CURRENT)
    grids = GROUPS["main tables"]
    first = table["grids"].str.split(",").map(lambda gs: next((g for g in gs if g in grids), None))
    rows, done = [], pd.Series(False, index=table.index)
    for grid in grids:
        done |= first == grid
        part = table[first == grid]
        cumulative = table[done]
        rows.append({"grid": grid, "runs": len(part), "GPU-hours (1 GPU)": round(gpu_hours(part, f"est_s_{k}", 1), 1),
                     "cumulative GPU-hours": round(gpu_hours(cumulative, f"est_s_{k}", 1), 1),
                     "cumulative wall h on 8 GPUs": round(gpu_hours(cumulative, f"est_s_{k}", 8), 1),
                     "cumulative fits one GPU-day": gpu_hours(cumulative, f"est_s_{k}", 1) <= GPU_DAY_HOURS,
                     "cumulative fits a day on 8 GPUs": gpu_hours(cumulative, f"est_s_{k}", 8) <= GPU_DAY_HOURS})
    return (f"Main tables by grid, scenario \"{CURRENT.name}\" (one GPU-day = {GPU_DAY_HOURS:g} GPU-hours): `main` is "
            "the paper's Tab.2 protocol (one shared rate per regime), `tuned` and `selection` the fair-comparison "
            "protocol this project adds (each regime at its own validated rate), `extended` Tab.6.\n\n"
            + pd.DataFrame(rows).to_markdown(index=False) + "\n")


THROUGHPUT_NOTE = "(images/s: " + "; ".join(
    f"{b.split('_patch')[0]} " + "/".join(str(v[m]) for m in v)
    for b, v in THROUGHPUT.items() if not b.startswith("mini")) + " for " + "/".join(THROUGHPUT["vit_small_patch16_224"]) + ")"


def plan_file(profile: str) -> Path:
    return home() / "figures" / "tables" / profile / "plan.md"


def write_plan(profile: str, table: pd.DataFrame) -> Path:
    """Write :func:`plan_report` to ``figures/tables/<profile>/plan.md`` (atomically)."""
    path = plan_file(profile)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_bytes(path, plan_report(profile, table).encode())


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adaptertune.paper.plan", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="paper", choices=PROFILES)
    parser.add_argument("--no-write", dest="write", action="store_false", help="print only")
    args = parser.parse_args(argv)
    table = plan_frame(args.profile)
    print(describe_plan(args.profile, table))
    print(plan_report(args.profile, table))
    if args.write:
        print(f"[plan] wrote {write_plan(args.profile, table)}", file=sys.stderr)
    return 0


__all__ = ["DATA_FORMAT", "DECODE_PER_CORE", "PRECISION_SPEEDUP", "SCENARIOS", "THROUGHPUT", "Scenario", "data_rate",
           "GPU_DAY_HOURS", "describe_plan", "estimate_seconds", "gpu_hours", "main_breakdown", "measured_throughput", "plan_frame", "plan_report",
           "write_plan"]


if __name__ == "__main__":
    raise SystemExit(main())
