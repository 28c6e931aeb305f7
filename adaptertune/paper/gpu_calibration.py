"""The plan's GPU numbers, measured: read from a ``make gpu-check`` folder instead of assumed.

``benchmarks/gpu_check.py`` writes, per device, the training and evaluation images/s of each backbone and regime per
precision (``bench_<variant>/bench.csv``: a fixed batch of 128 at 224 px, eager, fused AdamW) and the CPU data path's
images/s per worker and format (``loader/loader.csv``). The cost model (:mod:`.plan`) takes its rates from here where
a cell was measured and from its stated priors where not, and says which is which. Why a committed folder and not the
store: these are throughput measurements of the code on a machine CI never has, made once per lent GPU session.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..backbones import ALIASES
from ..paths import checkout_root
from ..regimes import methods

# The folder of the GPU the plan is calibrated on, relative to the checkout (a lent H200, 2026-12-04).
MEASURED_GPU_FOLDER = Path("benchmarks/results/gpu/nvidia-h200")
# bench variant -> the run precision it measures (compiled variants are reported, not planned: compile is off by
# default)
VARIANT_PRECISION = {"fp32": "fp32", "bf16": "bf16"}
# loader.py's formats -> the plan's data formats (``plan.DECODE_PER_CORE``); memory-device is the batched GPU crop
LOADER_FORMATS = {"jpeg": "jpeg", "jpeg-256": "jpeg_cached", "memory-pil": "memory"}
BARE = "bare"  # bench's unmodified model: the evaluation speed of head-only and fully fine-tuned models


@dataclass(frozen=True)
class Calibration:
    """Measured rates of one GPU machine, keyed by timm backbone name, method (head/full/adapter) and precision."""

    source: str  # the folder, relative to the checkout
    gpu: str
    date: str
    cpu: str
    train: dict[tuple[str, str, str], float] = field(default_factory=dict)
    infer: dict[tuple[str, str, str], float] = field(default_factory=dict)
    decode_per_core: dict[str, float] = field(default_factory=dict)  # per worker process, at the most workers measured
    decode_workers: int = 0
    device_augment: float | None = None

    def train_rate(self, backbone: str, method: str, precision: str) -> float | None:
        return self.train.get((backbone, method, precision))

    def eval_rate(self, backbone: str, method: str, precision: str) -> float | None:
        """A regime bench timed at inference (the adapter) by its own row, any other as the unmodified model."""
        return self.infer.get((backbone, method, precision)) or self.infer.get((backbone, BARE, precision))

    def describe(self) -> str:
        """One paragraph for the plan's notes: where the numbers come from and which ones are measured."""
        cells = ", ".join(sorted({f"{b.split('_patch')[0]}" for b, _, _ in self.train}))
        precisions = "/".join(sorted({p for *_, p in self.train}))
        return (f"Training and evaluation images/s of {cells} (head/full/adapter; {precisions}"
                f", batch 128, eager) and the data path's images/s per decode worker ({self.decode_workers} workers on "
                f"its {self.cpu}) measured on one {self.gpu} by `make gpu-check` on {self.date} (`{self.source}`)")

    def table(self) -> pd.DataFrame:
        """The measured training rates used, one row per backbone and regime, one column per precision."""
        rows = [{"backbone": b, "regime": m, "precision": p, "train images/s": v}
                for (b, m, p), v in self.train.items()]
        return pd.DataFrame(rows).pivot_table(index=["backbone", "regime"], columns="precision",
                                              values="train images/s").round(0).reset_index()


def _bench_rates(folder: Path) -> tuple[dict, dict]:
    train, infer = {}, {}
    for variant, precision in VARIANT_PRECISION.items():
        path = folder / f"bench_{variant}" / "bench.csv"
        if not path.is_file():
            continue
        for row in pd.read_csv(path).itertuples():
            backbone = ALIASES.get(row.backbone, row.backbone)
            if row.regime in methods() and pd.notna(row.train_img_s):  # bench's variants (recompute, ...) left out
                train[(backbone, row.regime, precision)] = float(row.train_img_s)
            if pd.notna(row.infer_img_s):
                infer[(backbone, row.regime, precision)] = float(row.infer_img_s)
    return train, infer


def load_calibration(folder: Path | None = None) -> Calibration | None:
    """The measurements in ``folder`` (default: the checkout's :data:`MEASURED_GPU_FOLDER`); None when absent (an
    installed package, or no GPU measured yet), so the plan falls back to its priors."""
    if folder is None:
        root = checkout_root()
        if root is None:
            return None
        folder = root / MEASURED_GPU_FOLDER
    env_file = folder / "environment.json"
    if not env_file.is_file():
        return None
    env = json.loads(env_file.read_text())
    train, infer = _bench_rates(folder)
    decode, workers, augment = {}, 0, None
    loader = folder / "loader" / "loader.csv"
    if loader.is_file():
        frame = pd.read_csv(loader)
        workers = int(frame["workers"].max())
        most = frame[frame["workers"] == workers]  # contention for cores and memory included
        decode = {LOADER_FORMATS[f]: float(r) for f, r in zip(most["format"], most["images_per_s_per_process"])
                  if f in LOADER_FORMATS}
        device = frame.loc[frame["format"] == "memory-device", "images_per_s"]
        augment = float(device.iloc[0]) if len(device) else None
    root = checkout_root()
    source = str(folder.relative_to(root)) if root is not None and folder.is_relative_to(root) else str(folder)
    return Calibration(source=source, gpu=env.get("gpu", env.get("device", "?")), date=str(env.get("date", ""))[:10],
                       cpu=env.get("cpu", "?"), train=train, infer=infer, decode_per_core=decode,
                       decode_workers=workers, device_augment=augment)


__all__ = ["Calibration", "MEASURED_GPU_FOLDER", "load_calibration"]
