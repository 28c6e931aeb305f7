"""``make gpu-check``: the first thing to run on a GPU machine — one command, and the files to bring back.

    python benchmarks/gpu_check.py --parts all              # everything on CUDA, one call
    python benchmarks/gpu_check.py --parts bench --variants fp32,bf16 --out "$OUT/gpu"   # calls capped at 10 min
    python benchmarks/gpu_check.py --summarize benchmarks/results/gpu/<device>             # merge such calls
    python benchmarks/gpu_check.py --device cpu --quick --parts all    # CI-size form on CPU (tested: cannot rot)

Parts (``--parts``, default ``bench,determinism``; ``all`` adds ``loader``, ``paper`` and ``mini``):

- **bench**: ``benchmarks/bench.py`` for ViT-S/16 and ViT-B/16 at the paper's batch size (128), once per variant —
  fp32, bf16 autocast, bf16 + ``torch.compile`` (its own regimes only: compiling takes minutes per model) — with
  fused AdamW; peak GPU memory per regime from a fresh process each (``torch.cuda.max_memory_allocated``) and the
  restated targets (``targets.py``). LoRA is included when peft is installed.
- **determinism**: the same run twice through ``python -m adaptertune run`` (digits, bundled with scikit-learn, so
  no download; an adapter and a full fine-tuning run of mini-s): identical metrics, per-step losses, predictions
  and trained tensors, or the largest difference.
- **loader**: ``benchmarks/loader.py`` on this machine's cores: images/s of the training data path per dataset format
  (JPEG files, pre-resized JPEG, in-memory PIL, batched crops) and worker count -> ``loader/`` (the decode costs
  ``paper.plan`` assumes).
- **paper**: one short ``--profile paper`` run (DeiT-T/16 adapter, the rehearsal's offline hub cache and Pets fixture,
  ``benchmarks/rehearse.py``) on the device: the paper path's numerics (bf16 + TF32), workers and device, recorded
  in ``paper_run.json``.
- **mini**: ``python -m adaptertune.paper.suite --profile mini`` in a temporary project home on the GPU, with its
  wall time and each run's device and peak memory. Needs Fashion-MNIST: found as this machine finds it, or
  ``--fashion-mnist DIR`` (the four idx files; carry ``data/datasets/FashionMNIST/raw`` to the GPU machine).

Everything lands in ``<out>/<device>/`` (default ``benchmarks/results/gpu/``): one folder per bench variant (the
benchmark's own CSV/MD/PNG), ``determinism.csv``, ``mini_suite.csv`` + ``mini_runs.csv``, one status file per part
under ``parts/``, and ``summary.md`` / ``summary.csv`` rebuilt from whatever the folder holds — so parts run in
separate calls (and folders merged by hand, then ``--summarize``) add up. Each part's files are written as soon as
it ends: a call cut short still leaves what finished. ``benchmarks/results/gpu/nvidia-h200/`` holds one such folder
(three calls on a lent H200, merged); ``paper.plan`` reads it (``paper.gpu_calibration``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from adaptertune.data.mini import FMNIST_FILES, locate_fashion_mnist  # noqa: E402
from adaptertune.store.table import load_results  # noqa: E402
from benchmarks.report import QUICK_STAMP, cpu_model  # noqa: E402

PARTS = ("bench", "determinism", "loader", "paper", "mini")
PAPER_BATCH = 128
# variant -> bench.py options; fused AdamW throughout (bench's default on CUDA)
VARIANTS: dict[str, list[str]] = {
    "fp32": ["--precision", "fp32"],
    "bf16": ["--precision", "bf16"],
    "bf16-compile": ["--precision", "bf16", "--compile", "--regimes", "full,adapter,adapter-startL/2",
                     "--memory-regimes", ""],  # compile takes minutes per model: the regimes the targets need
}
FULL_BACKBONES = "vit-s16,vit-b16"  # --backbones adds DeiT-T/16 (deit-t16) for the plan's calibration
FULL_MIN_SECONDS = 5.0  # bench's timed seconds per backbone at least (--min-seconds)
# --quick: every code path once, in about two minutes on 2 CPU cores (bf16-compile also covers bf16)
QUICK_BENCH = ["--quick", "--regimes", "full,adapter,adapter-recompute-half", "--memory-regimes", "adapter"]
QUICK_VARIANTS = ("fp32", "bf16-compile")
# the determinism runs: a short adapter run and a short full fine-tuning run, random mini-s weights
DETERMINISM = {"adapter": ["--method", "adapter"], "full": ["--method", "full"]}
QUICK_DETERMINISM = ("adapter",)
DETERMINISM_COMMON = ["--dataset", "digits", "--backbone", "mini-s", "--no-pretrained", "--seed", "0",
                      "--warmup-epochs", "1", "--log-every", "1"]
TIMING_KEYS = ("seconds", "train_seconds", "images_per_s", "train_images_per_s", "wall_s")


def log(message: str) -> None:
    print(f"[gpu-check] {message}", flush=True)


def device_label(device: torch.device) -> str:
    """A folder name for the machine: the GPU's name, or ``cpu-<model>``."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu-{cpu_model()}"
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def environment(device: torch.device) -> dict:
    info = {"date": time.strftime("%Y-%m-%dT%H:%M:%S"), "device": str(device), "cpu": cpu_model(), "torch": torch.__version__,
            "cuda": torch.version.cuda, "python": platform.python_version(), "cpu_cores": os.cpu_count()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gb=round(props.total_memory / 2**30, 1), gpu_count=torch.cuda.device_count())
        if shutil.which("nvidia-smi"):
            proc = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                                  capture_output=True, text=True)
            info["nvidia_smi"] = proc.stdout.strip()
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    info["git_sha"] = git.stdout.strip() or None
    return info


def _python(args: list[str], env: dict | None = None, cwd: Path = ROOT) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True)
    return proc, time.perf_counter() - t0


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))
    return env


def _tail(proc: subprocess.CompletedProcess, lines: int = 20) -> str:
    return "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-lines:])


# ------------------------------------------------------------------------------------------------------ parts
def full_bench(backbones: str, min_seconds: float, regimes: str | None, memory_regimes: str | None) -> list[str]:
    """bench.py's options for a measurement at the paper's batch (``regimes``/``memory_regimes`` None: bench's own)."""
    extra = ([] if regimes is None else ["--regimes", regimes]) + \
        ([] if memory_regimes is None else ["--memory-regimes", memory_regimes])
    return ["--backbones", backbones, "--batch-size", str(PAPER_BATCH), "--min-seconds", str(min_seconds), *extra]


def run_bench(out: Path, device: torch.device, quick: bool, variants: tuple[str, ...],
              full: list[str] | None = None) -> list[dict]:
    """One bench.py run per variant into ``out/bench_<variant>/``; one status row per variant."""
    status = []
    full = full or full_bench(FULL_BACKBONES, FULL_MIN_SECONDS, None, None)
    for variant in variants:
        options = VARIANTS[variant]
        folder = out / f"bench_{variant}"
        args = [str(ROOT / "benchmarks" / "bench.py"), "--device", device.type, "--optimizer", "fused",
                *(QUICK_BENCH if quick else full), *options, "--out", str(folder)]
        if quick and "--compile" in options:
            args += ["--compile-backend", "eager"]  # dynamo tracing without code generation: seconds, not minutes
        log(f"bench {variant}: {' '.join(args[1:])}")
        proc, secs = _python(args, _env())
        ok = proc.returncode == 0 and (folder / "ratios.csv").is_file()
        log(f"bench {variant}: {'ok' if ok else 'FAILED'} in {secs:.0f} s")
        status.append({"part": f"bench {variant}", "ok": ok, "wall_s": round(secs, 1),
                       "detail": "" if ok else _tail(proc)})
    return status


def _comparable(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in TIMING_KEYS}


def _max_abs_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    if a.keys() != b.keys():
        return float("inf")
    return max((float((a[k].double() - b[k].double()).abs().max()) if a[k].numel() else 0.0 for k in a), default=0.0)


def compare_runs(root_a: Path, root_b: Path) -> dict:
    """Two stores with the same single run: are its metrics, per-step losses, predictions and tensors identical?"""
    (run_a,), (run_b,) = sorted((root_a / "runs").iterdir()), sorted((root_b / "runs").iterdir())
    result_a, result_b = (json.loads((r / "result.json").read_text()) for r in (run_a, run_b))
    metrics = sorted(k for k in _comparable(result_a["metrics"]) if result_a["metrics"][k] != result_b["metrics"].get(k))
    logs = []
    for name in ("metrics.jsonl", "steps.jsonl"):
        rows_a, rows_b = ([_comparable(json.loads(line)) for line in (r / name).read_text().splitlines()] for r in (run_a, run_b))
        if rows_a != rows_b:
            logs.append(name)
    tensors = "adapters.safetensors" if (run_a / "adapters.safetensors").is_file() else "model.safetensors"
    diff = _max_abs_diff(load_file(str(run_a / tensors)), load_file(str(run_b / tensors)))
    with np.load(run_a / "predictions.npz") as pa, np.load(run_b / "predictions.npz") as pb:
        same_predictions = all(np.array_equal(pa[k], pb[k]) for k in pa.files)
    return {"run_id": run_a.name, "same_run_id": run_a.name == run_b.name, "identical_metrics": not metrics,
            "differing_metrics": ",".join(metrics + logs), "identical_predictions": same_predictions,
            "identical_tensors": diff == 0.0, "max_abs_tensor_diff": diff, "test_acc": result_a["metrics"]["test_acc"],
            "device": result_a.get("device")}


def run_determinism(out: Path, device: torch.device, quick: bool) -> list[dict]:
    """Each DETERMINISM config twice, in two fresh stores; ``determinism.csv`` says what (if anything) differs."""
    rows, status = [], []
    length = ["--epochs", "1", "--limit", "128"] if quick else ["--epochs", "3", "--limit", "1024"]
    with tempfile.TemporaryDirectory(prefix="gpu-check-determinism-") as tmp:
        env = _env(ADAPTERTUNE_HOME=tmp, ADAPTERTUNE_RESULTS=str(Path(tmp) / "results"))
        for name, options in DETERMINISM.items():
            if quick and name not in QUICK_DETERMINISM:
                continue
            roots = [Path(tmp) / f"{name}-{i}" for i in (1, 2)]
            t0, procs = time.perf_counter(), []
            for root in roots:
                args = ["-m", "adaptertune", "run", *DETERMINISM_COMMON, *options, *length, "--device", str(device),
                        "--root", str(root)]
                procs.append(_python(args, env)[0])
            secs = time.perf_counter() - t0
            ok = all(p.returncode == 0 for p in procs)
            row = {"config": name, "args": " ".join(DETERMINISM_COMMON + options + length), **(compare_runs(*roots) if ok else {})}
            rows.append(row)
            same = ok and row["identical_metrics"] and row["identical_tensors"] and row["identical_predictions"]
            log(f"determinism {name}: {'identical' if same else 'DIFFERENT' if ok else 'FAILED'} ({secs:.0f} s)")
            detail = "" if same else (f"runs differ: {row['differing_metrics'] or 'tensors/predictions'}; max |Δ| of "
                                      f"the trained tensors {row['max_abs_tensor_diff']:.3g}" if ok else
                                      _tail(next(p for p in procs if p.returncode)))
            status.append({"part": f"determinism {name}", "ok": same, "wall_s": round(secs, 1), "detail": detail})
    pd.DataFrame(rows).to_csv(out / "determinism.csv", index=False)
    return status


def _stage_fashion_mnist(home: Path, source: Path | None) -> None:
    """Fashion-MNIST's four idx files into the temporary home, from ``source`` or wherever this machine has them."""
    files = locate_fashion_mnist(source) if source is not None else locate_fashion_mnist()
    target = home / "data" / "datasets" / "FashionMNIST" / "raw"
    target.mkdir(parents=True, exist_ok=True)
    for path in files.values():
        (target / path.name).symlink_to(path.resolve())


def run_loader(out: Path, quick: bool, device: torch.device) -> list[dict]:
    """benchmarks/loader.py into ``out/loader/`` (quick: tiny sizes, workers 0 and 1); batched crops on ``device``."""
    folder = out / "loader"
    args = [str(ROOT / "benchmarks" / "loader.py"), "--out", str(folder), "--device", device.type]
    args += ["--quick", "--workers", "0,1"] if quick else ["--workers", f"0,1,2,4,{max(1, (os.cpu_count() or 2) - 1)}"]
    proc, secs = _python(args, _env())
    ok = proc.returncode == 0 and (folder / "loader.csv").is_file()
    log(f"loader: {'ok' if ok else 'FAILED'} in {secs:.0f} s")
    return [{"part": "loader", "ok": ok, "wall_s": round(secs, 1), "detail": "" if ok else _tail(proc)}]


def run_paper(out: Path, device: torch.device) -> list[dict]:
    """One short paper-profile run on the device, offline (the rehearsal's hub cache and fixture)."""
    from benchmarks import rehearse

    with tempfile.TemporaryDirectory(prefix="gpu-check-paper-") as tmp:
        env = rehearse.rehearsal_env(Path(tmp))
        rehearse.write_inputs(Path(tmp), env)
        from adaptertune.paper.experiments import config

        cfg = config("paper", rehearse.DATASET, rehearse.GRID_BACKBONE, "adapter", 0, epochs=1, warmup_epochs=0)
        args = ["-m", "adaptertune", *rehearse.cli_args(cfg), "--device", str(device)]  # the grid's recipe
        proc, secs = _python(args, env)
        results = sorted(Path(env["ADAPTERTUNE_RESULTS"]).glob("runs/*/result.json"))
        record = json.loads(results[0].read_text()) if results else {}
    ok = proc.returncode == 0 and record.get("status") == "finished"
    keep = {k: record.get(k) for k in ("run_id", "status", "device", "numerics", "wall_s", "peak_mem_mb", "metrics")}
    (out / "paper_run.json").write_text(json.dumps({"args": args, "seconds": secs, **keep}, indent=1) + "\n")
    log(f"paper run: {'ok' if ok else 'FAILED'} in {secs:.0f} s")
    return [{"part": "paper run", "ok": ok, "wall_s": round(secs, 1), "detail": "" if ok else _tail(proc)}]


def run_mini(out: Path, device: torch.device, quick: bool, fashion_mnist: Path | None) -> list[dict]:
    """The mini suite (quick: the smoke profile, notebook 03 only) in a fresh home: wall time, runs, peak memory."""
    profile, extra = ("smoke", ["--only", "03"]) if quick else ("mini", [])
    with tempfile.TemporaryDirectory(prefix="gpu-check-mini-") as tmp:
        home = Path(tmp)
        try:
            _stage_fashion_mnist(home, fashion_mnist)
        except FileNotFoundError as err:
            log(f"mini: no Fashion-MNIST ({err}); pass --fashion-mnist DIR")
            return [{"part": f"suite {profile}", "ok": False, "wall_s": 0.0, "detail": str(err)[:2000]}]
        log(f"suite --profile {profile} in {home} ...")
        proc, secs = _python(["-m", "adaptertune.paper.suite", "--profile", profile, *extra],
                             _env(ADAPTERTUNE_HOME=str(home), ADAPTERTUNE_RESULTS=str(home / "results")))
        runs = load_results(home / "results", status=None)
    cols = ["run_id", "status", "dataset", "backbone", "method", "rank", "seed", "epochs", "wall_s", "peak_mem_mb",
            "train_images_per_s", "device", "test_acc"]
    runs.reindex(columns=cols).to_csv(out / "mini_runs.csv", index=False)
    finished = int((runs["status"] == "finished").sum()) if len(runs) else 0
    pd.DataFrame([{"profile": profile, "returncode": proc.returncode, "wall_s": round(secs, 1), "runs": len(runs),
                   "finished": finished, "devices": ",".join(sorted(set(runs["device"].dropna()))) if len(runs) else ""}]
                 ).to_csv(out / "mini_suite.csv", index=False)
    log(f"suite --profile {profile}: exit {proc.returncode} in {secs:.0f} s, {finished}/{len(runs)} runs finished")
    return [{"part": f"suite {profile}", "ok": proc.returncode == 0, "wall_s": round(secs, 1),
             "detail": "" if proc.returncode == 0 else _tail(proc)}]


# ---------------------------------------------------------------------------------------------------- summary
def _table(frame: pd.DataFrame) -> str:
    return frame.to_markdown(index=False, floatfmt=".4g") if len(frame) else "(none)"


def bench_tables(out: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Throughput and peak memory per variant × backbone × regime, and every variant's targets, from the bench folders."""
    detail, judged = [], []
    for folder in sorted(out.glob("bench_*")):
        variant = folder.name[len("bench_"):]
        if (folder / "bench.csv").is_file():
            detail.append(pd.read_csv(folder / "bench.csv").assign(variant=variant))
        if (folder / "targets.csv").is_file() and (folder / "targets.csv").stat().st_size > 1:
            judged.append(pd.read_csv(folder / "targets.csv").assign(variant=variant))
    if not detail:
        return pd.DataFrame(), pd.DataFrame(), pd.DataFrame()
    rows = pd.concat(detail, ignore_index=True)
    rows = rows[rows["regime"] != "bare"]
    index = ["backbone", "batch", "regime"]
    speed = rows.pivot_table(index=index, columns="variant", values="train_img_s").reset_index()
    memory = rows.pivot_table(index=index, columns="variant", values="peak_mb").reset_index() \
        if "peak_mb" in rows else pd.DataFrame()
    return speed, memory, pd.concat(judged, ignore_index=True) if judged else pd.DataFrame()


def record(out: Path, env: dict, status: list[dict]) -> None:
    """One file per part under ``out/parts/``: folders returned by separate calls merge without clashes."""
    (out / "parts").mkdir(exist_ok=True)
    for row in status:
        name = re.sub(r"[^a-z0-9]+", "-", row["part"].lower()).strip("-")
        (out / "parts" / f"{name}.json").write_text(json.dumps({**row, "date": env["date"]}, indent=1) + "\n")


def write_summary(out: Path, env: dict, quick: bool = False) -> Path:
    """``summary.csv`` (every part's status, from ``out/parts/``) and ``summary.md`` from what the folder holds."""
    found = [json.loads(f.read_text()) for f in sorted((out / "parts").glob("*.json"))] if (out / "parts").is_dir() else []
    parts = pd.DataFrame(found, columns=["part", "ok", "wall_s", "date", "detail"])
    parts.to_csv(out / "summary.csv", index=False)
    speed, memory, judged = bench_tables(out)
    md = [f"# GPU check — {env.get('gpu', env['device'])}", "", *([QUICK_STAMP, ""] if quick else []), "Environment: " + ", ".join(f"{k}={v}" for k, v in env.items()), "",
          "## Parts", "", _table(parts.drop(columns=["detail"], errors="ignore")), ""]
    failed = parts[~parts["ok"].astype(bool)]
    for row in failed.itertuples():
        md += [f"**{row.part} failed:**", "", "```", str(row.detail), "```", ""]
    if len(speed):
        md += ["## Training throughput (images/s), per variant", "", _table(speed), ""]
    if len(memory):
        md += ["## Peak memory per regime (MB; fresh process, `torch.cuda.max_memory_allocated` on GPU)", "",
               _table(memory), ""]
    if len(judged):
        view = judged[["variant", "backbone", "target", "goal", "value", "q25", "q75", "n", "passed"]]
        md += ["## Targets (benchmarks/targets.py)", "", _table(view), ""]
    if (out / "determinism.csv").is_file():
        md += ["## Determinism: the same run twice", "", _table(pd.read_csv(out / "determinism.csv")), ""]
    if (out / "mini_suite.csv").is_file():
        md += ["## The mini suite on this device", "", _table(pd.read_csv(out / "mini_suite.csv")), ""]
        runs = pd.read_csv(out / "mini_runs.csv")
        if len(runs):
            per_regime = runs.groupby(["backbone", "method"])[["peak_mem_mb", "wall_s", "train_images_per_s"]].median()
            md += ["Median per run, by backbone and regime:", "", _table(per_regime.reset_index()), ""]
    path = out / "summary.md"
    path.write_text("\n".join(md))
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"],
                   help="cuda (default; an error without a GPU) or cpu (with --quick: the CI-size form)")
    p.add_argument("--parts", default="bench,determinism", help=f"comma-separated from {PARTS}, or 'all'")
    p.add_argument("--variants", default=None, help=f"bench variants, comma-separated from {tuple(VARIANTS)} "
                   f"(default: all; --quick: {QUICK_VARIANTS})")
    p.add_argument("--backbones", default=FULL_BACKBONES, help="bench backbones (aliases), comma-separated")
    p.add_argument("--regimes", default=None, help="bench regimes for the fp32/bf16 variants (default: bench's)")
    p.add_argument("--memory-regimes", default=None, help="bench regimes whose peak memory is measured, one process "
                   "each ('' none; default: bench's)")
    p.add_argument("--min-seconds", type=float, default=FULL_MIN_SECONDS, help="bench: timed seconds per backbone at least")
    p.add_argument("--summarize", type=Path, metavar="DIR",
                   help="only rebuild DIR/summary.md from the files of earlier calls (e.g. folders merged by hand)")
    p.add_argument("--quick", action="store_true", help="CI-size form: tiny shapes, smoke suite (plumbing, not numbers)")
    p.add_argument("--out", type=Path, default=None,
                   help="parent folder (default benchmarks/results/gpu; --quick: benchmarks/results/quick/gpu)")
    p.add_argument("--fashion-mnist", type=Path, default=None, help="folder with the four Fashion-MNIST idx files "
                   f"({', '.join(FMNIST_FILES.values())}, optionally .gz) for the mini part")
    args = p.parse_args(argv)
    if args.summarize is not None:
        env_file = args.summarize / "environment.json"
        env = json.loads(env_file.read_text()) if env_file.is_file() else {"device": args.summarize.name, "date": ""}
        log(f"summary rebuilt: {write_summary(args.summarize, env, args.quick)}")
        return 0
    parts = PARTS if args.parts == "all" else tuple(x.strip() for x in args.parts.split(",") if x.strip())
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        p.error(f"unknown parts {unknown}: choose from {PARTS} or 'all'")
    variants = tuple(v.strip() for v in args.variants.split(",") if v.strip()) if args.variants else \
        (QUICK_VARIANTS if args.quick else tuple(VARIANTS))
    if sorted(set(variants) - set(VARIANTS)):
        p.error(f"unknown variants {sorted(set(variants) - set(VARIANTS))}: choose from {tuple(VARIANTS)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("torch sees no CUDA device: this is the GPU check (on a CPU machine, `--device cpu --quick` runs its "
                "CI-size form)")
    device = torch.device(args.device)
    parent = args.out or ROOT / "benchmarks" / "results" / ("quick/gpu" if args.quick else "gpu")
    out = parent / device_label(device)
    out.mkdir(parents=True, exist_ok=True)
    env = environment(device)
    (out / "environment.json").write_text(json.dumps(env, indent=2) + "\n")
    log(f"{env.get('gpu', device)}: parts {list(parts)} -> {out}")
    status: list[dict] = []
    t0 = time.perf_counter()
    for part in parts:
        if part == "bench":
            done = run_bench(out, device, args.quick, variants,
                             full_bench(args.backbones, args.min_seconds, args.regimes, args.memory_regimes))
        elif part == "determinism":
            done = run_determinism(out, device, args.quick)
        elif part == "loader":
            done = run_loader(out, args.quick, device)
        elif part == "paper":
            done = run_paper(out, device)
        else:
            done = run_mini(out, device, args.quick, args.fashion_mnist)
        status += done
        record(out, env, done)
        write_summary(out, env, args.quick)  # a call cut short still leaves every finished part
    log(f"done in {time.perf_counter() - t0:.0f} s: {out / 'summary.md'}")
    return 0 if all(s["ok"] for s in status) else 1


if __name__ == "__main__":
    raise SystemExit(main())
