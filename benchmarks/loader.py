"""Images/s of the training data path per worker count and dataset format, on this machine's CPU (issue #16).

Formats, each through the project's own code (``data.make_loader`` with a warm ``WorkerPool``, the paper's train
transform ``data.transforms.paper_transforms``):

- ``jpeg``: full-size JPEG files (500x375, like Pets / Food101), PIL decode + RandomResizedCrop(224) + flip per image;
- ``jpeg-256``: the same files stored once pre-resized to a shorter side of 256 (the planned JPEG cache);
- ``memory-pil``: 32x32 images held in memory (CIFAR, SVHN), the same PIL transform per image;
- ``memory-device``: the same images cropped as a batch (``data.device_augment``; here on the CPU, on a GPU there).

Writes ``benchmarks/results/loader.{csv,md}`` (``--quick``: a tiny plumbing check into a temporary folder unless
``--out`` is given). Run alone on a quiet machine; other processes change the answer. ``paper.plan``'s decode costs
(DECODE_PER_CORE) are the numbers this measures.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adaptertune.data import make_loader  # noqa: E402
from adaptertune.data.device_augment import DeviceRandomResizedCrop  # noqa: E402
from adaptertune.data.loader import WorkerPool  # noqa: E402
from adaptertune.data.paper import FileListDataset, TransformedDataset  # noqa: E402
from adaptertune.data.transforms import DEFAULT_DATA_CONFIGS, paper_transforms  # noqa: E402
from adaptertune.store.provenance import cpu_model  # noqa: E402
from benchmarks.report import QUICK_STAMP, machine_line  # noqa: E402

CFG = {**DEFAULT_DATA_CONFIGS["paper"], "input_size": [3, 224, 224]}


class _Memory(torch.utils.data.Dataset):
    """In-memory uint8 images through a per-image PIL transform, as torchvision's CIFAR datasets do."""

    def __init__(self, images: np.ndarray, transform) -> None:
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.transform(Image.fromarray(self.images[index])), 0


def _jpegs(folder: Path, n: int, short_side: int | None) -> list[tuple[str, int]]:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    samples = []
    for k in range(n):
        noise = rng.integers(0, 256, (375, 500, 3), dtype=np.uint8)
        image = Image.fromarray(noise).filter(_blur())
        if short_side:
            scale = short_side / min(image.size)
            image = image.resize((round(image.size[0] * scale), round(image.size[1] * scale)), Image.BILINEAR)
        path = folder / f"{k:05d}.jpg"
        image.save(path, quality=90)
        samples.append((str(path), 0))
    return samples


def _blur():
    from PIL import ImageFilter

    return ImageFilter.GaussianBlur(2)  # photo-like content: JPEG decode cost depends on it


def _rate(dataset, workers: int, batch: int, batches: int) -> float:
    """Images/s over at least ``batches`` batches, workers started once (as in a run). Untimed first: one batch per
    worker plus one (what the workers decode while the first batch is awaited); timed: at least four per worker, so
    batches prefetched during the warm-up cannot pass for throughput. The files are read in a cycle when too few."""
    warmup, timed = workers + 1, max(batches, 4 * workers)
    with WorkerPool() as pool:
        indices = [k % len(dataset) for k in range(batch * (warmup + timed))]
        loader = make_loader(torch.utils.data.Subset(dataset, indices), batch_size=batch,
                             shuffle=True, seed=0, num_workers=workers, pool=pool)
        it = iter(loader)
        for _ in range(warmup):
            next(it)
        t0, seen = time.perf_counter(), 0
        for x, _ in it:
            seen += x.shape[0]
        return seen / (time.perf_counter() - t0)


def _device_rate(images: np.ndarray, batch: int, batches: int, device: torch.device) -> float:
    """Batched crop + flip of uint8 images already on ``device`` (as the in-memory sets are kept there)."""
    aug = DeviceRandomResizedCrop(size=(224, 224), mean=tuple(CFG["mean"]), std=tuple(CFG["std"]))
    x = torch.from_numpy(images[:batch]).permute(0, 3, 1, 2).contiguous().to(device)
    gen = torch.Generator(device=device).manual_seed(0)
    aug(x, gen)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for _ in range(batches):
        aug(x, gen)
    sync()
    return batch * batches / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="0,1,2", help="worker counts, comma-separated")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: plumbing only, not a measurement")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where the batched crops run")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    args = parser.parse_args(argv)
    workers = [int(w) for w in args.workers.split(",")]
    batch, batches = (8, 2) if args.quick else (args.batch, args.batches)
    out = args.out or (Path(tempfile.mkdtemp()) if args.quick else ROOT / "benchmarks" / "results")
    out.mkdir(parents=True, exist_ok=True)
    train_tf, _ = paper_transforms(CFG)
    n = batch * (batches + 1)
    small = np.random.default_rng(1).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        formats = {"jpeg": TransformedDataset(FileListDataset(_jpegs(Path(tmp, "full"), n, None), ["x"]), train_tf),
                   "jpeg-256": TransformedDataset(FileListDataset(_jpegs(Path(tmp, "256"), n, 256), ["x"]), train_tf),
                   "memory-pil": _Memory(small, train_tf)}
        for fmt, dataset in formats.items():
            for w in workers:
                rate = _rate(dataset, w, batch, batches)
                rows.append({"format": fmt, "workers": w, "images_per_s": rate,
                             "images_per_s_per_process": rate / max(1, w)})
                print(f"[loader] {fmt:13s} workers={w}: {rate:8.0f} images/s", flush=True)
    device = torch.device(args.device)
    rate = _device_rate(small, batch, batches, device)
    rows.append({"format": "memory-device", "workers": 0, "images_per_s": rate, "images_per_s_per_process": rate})
    print(f"[loader] memory-device batched on {device.type}: {rate:8.0f} images/s", flush=True)
    frame = pd.DataFrame(rows)
    machine = {"cpu": cpu_model(), "cpu_cores": os.cpu_count(), "torch": torch.__version__, "crops_on": device.type,
               "batch": batch, "batches": batches}
    frame.to_csv(out / "loader.csv", index=False)
    text = ((QUICK_STAMP + "\n\n") if args.quick else "") + \
        "Training data path, images/s at 224 px per dataset format and decode workers (`benchmarks/loader.py`).\n\n" + \
        frame.to_markdown(index=False, floatfmt=".0f") + "\n\n" + machine_line(machine) + "\n"
    (out / "loader.md").write_text(text)
    print(f"[loader] wrote {out / 'loader.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
