"""Two sweep shards on one machine against one process doing both (issue #13): wall time of the same runs three ways.

1. one process (``--threads`` default: every core);
2. ``--shard 0/2`` and ``--shard 1/2`` at once, each sizing its thread pool to its share (the default rule of
   ``adaptertune.training.threads``: cores / shards);
3. the same two shards with every core each (``--threads <cores>``): what happened before the rule, for reference
   (``--oversubscribed``; slow on purpose).

Each variant trains the runs afresh into its own throw-away store, with the mini backbones of the project home.
Writes ``benchmarks/results/shards.{csv,md}``. Run alone on a quiet machine: other processes change the answer.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adaptertune.paper import experiments  # noqa: E402
from adaptertune.paths import home  # noqa: E402


def sweep_file(path: Path, seeds: tuple[int, ...]) -> int:
    """The main grid of the mini profile at ``seeds`` (both backbones, every dataset and regime) as a sweep file."""
    configs = [c for c in experiments.grid("main", "mini") if c.seed in seeds]
    grid = [{k: [v] for k, v in c.to_dict().items() if v is not None} for c in configs]
    path.write_text(json.dumps({"grid": grid}))  # JSON is YAML
    return len(configs)


def run_variant(name: str, sweep: Path, data: Path, shards: int, threads: int | None) -> float:
    """Wall seconds until every process of this variant has finished its share of the sweep."""
    work = Path(tempfile.mkdtemp(prefix=f"shards-{name}-"))
    shutil.copytree(data / "backbones", work / "data" / "backbones")
    if (data / "splits").is_dir():
        shutil.copytree(data / "splits", work / "data" / "splits")
    env = {**os.environ, "ADAPTERTUNE_HOME": str(work), "ADAPTERTUNE_RESULTS": str(work / "results")}
    for var in ("OMP_NUM_THREADS", "SLURM_CPUS_PER_TASK"):
        env.pop(var, None)
    cmd = [sys.executable, "-m", "adaptertune", "sweep", str(sweep)]
    extra = ["--threads", str(threads)] if threads else []
    t0 = time.perf_counter()
    procs = [subprocess.Popen(cmd + (["--shard", f"{i}/{shards}"] if shards > 1 else []) + extra, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for i in range(shards)]
    errors = [p.communicate()[1] for p in procs]
    seconds = time.perf_counter() - t0
    if any(p.returncode for p in procs):
        raise RuntimeError(f"variant {name} failed:\n" + "\n".join(e[-2000:] for e in errors))
    shutil.rmtree(work)
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0", help="seeds of the main grid to train (default: 0, i.e. 18 runs)")
    parser.add_argument("--oversubscribed", action="store_true", help="also time two shards with every core each")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    data = home() / "data"
    if not (data / "backbones" / "mini").is_dir():
        raise SystemExit(f"no mini backbones under {data}/backbones/mini: run `make mini` (or pretrain-mini) first")
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        sweep = Path(tmp) / "sweep.yaml"
        n = sweep_file(sweep, tuple(int(s) for s in args.seeds.split(",")))
        variants = [("one process", 1, None), ("two shards, threads sized (default)", 2, None)]
        if args.oversubscribed:
            variants.append((f"two shards, {cores} threads each", 2, cores))
        rows = []
        for name, shards, threads in variants:
            print(f"[shards] {name}: {n} runs ...", flush=True)
            rows.append({"variant": name, "processes": shards, "runs": n,
                         "wall_s": round(run_variant(name.split(",")[0].replace(" ", "-"), sweep, data, shards, threads), 1)})
            print(f"[shards] {name}: {rows[-1]['wall_s']} s", flush=True)
    table = pd.DataFrame(rows)
    table["vs_one_process"] = (table["wall_s"] / table["wall_s"].iloc[0]).round(2)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "shards.csv", index=False)
    verdict = ("met" if table["vs_one_process"].iloc[1] <= 1.0 else "missed") + \
        f": two sized shards take {table['vs_one_process'].iloc[1]:.2f}× the time of one process"
    (out / "shards.md").write_text(
        f"Two sweep shards on {cores} cores vs one process doing both: the mini main grid at seed(s) {args.seeds} "
        f"({n} runs), each variant in a fresh store (`benchmarks/shards.py`).\n\n"
        + table.to_markdown(index=False) + f"\n\nTarget (two shards no slower than one process): {verdict}.\n")
    print((out / "shards.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
