"""How far do the mini verdicts move on a CPU with other kernels? ``make mini`` from nothing under another ISA.

    python benchmarks/cross_isa.py            # ~1 h on 2 cores; writes benchmarks/results/cross_isa.md
    ADAPTERTUNE_RESULTS=/path/to/store python benchmarks/cross_isa.py   # compare with the committed pass's store

Another CPU type changes the last bits of training through the kernels it dispatches to (ATen's vectorised loops,
MKL's GEMMs, oneDNN), not through the code. With no second CPU type at hand, this runs the whole mini suite from an
empty run store in a clean worktree of HEAD with those libraries held to AVX2 (``ATEN_CPU_CAPABILITY``,
``MKL_ENABLE_INSTRUCTIONS``, ``ONEDNN_MAX_CPU_ISA``) where this machine would use AVX-512, and reports what the suite
itself reports against the committed tables: how many verdict cells differ, how far each run's test accuracy moved
(same run ids: the ISA is not an input of a run), how many committed files changed, and the wall clock of the pass
from nothing. Nothing else should run meanwhile: the wall clock is quoted with this machine's CPU.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "cross_isa.md"
ISA_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def _git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def run_pass(work: Path, store: Path, log: Path) -> float:
    """``make mini``'s suite in ``work`` (its own home and store) under the AVX2 kernels; returns wall seconds."""
    env = {**os.environ, **ISA_ENV, "ADAPTERTUNE_HOME": str(work), "ADAPTERTUNE_RESULTS": str(store),
           "PYTHONPATH": str(work)}
    t0 = time.perf_counter()
    with open(log, "w") as handle:
        done = subprocess.run([sys.executable, "-m", "adaptertune.paper.suite", "--profile", "mini"], cwd=work, env=env,
                              stdout=handle, stderr=subprocess.STDOUT, check=False)
    if done.returncode:
        raise RuntimeError(f"the suite failed ({done.returncode}); see {log}")
    return time.perf_counter() - t0


def run_moves(store: Path) -> tuple[int, int, float, float]:
    """(runs compared, runs with identical test accuracy, mean |Δ|, max |Δ| in points) against this checkout's store."""
    sys.path.insert(0, str(ROOT))
    from adaptertune.store import runs

    diffs = []
    for result in sorted((store / "runs").glob("*/result.json")):
        other = runs.read_json(result)
        mine = runs.read_result(result.parent.name)
        if (other.get("status") == "finished" and mine and mine.get("status") == "finished"
                and other["metrics"].get("test_acc") is not None):  # proxy runs skip the test evaluation
            diffs.append(100 * abs(float(other["metrics"]["test_acc"]) - float(mine["metrics"]["test_acc"])))
    if not diffs:
        return 0, 0, float("nan"), float("nan")
    return len(diffs), sum(d == 0 for d in diffs), sum(diffs) / len(diffs), max(diffs)


def report(work: Path, store: Path, wall_s: float, commit: str) -> str:
    sys.path.insert(0, str(ROOT))
    from adaptertune.store.provenance import cpu_model

    stability = (work / "figures" / "tables" / "mini" / "verdict_stability.md").read_text().strip()
    changed = [line[3:] for line in _git("status", "--porcelain", "--", "figures", "notebooks/executed",
                                         cwd=work).splitlines() if line]
    n, same, mean, worst = run_moves(store)
    settings = ", ".join(f"{k}={v}" for k, v in ISA_ENV.items())
    return "\n".join([
        f"`make mini` from an empty run store at commit {commit}, on {cpu_model()} ({os.cpu_count()} cores), with the "
        f"kernels held to AVX2 ({settings}) where the committed appendix used this CPU's AVX-512.",
        "",
        f"- Wall clock of the pass from nothing (training in two shard processes, then the notebooks): "
        f"{wall_s / 60:.1f} min.",
        f"- Runs compared with the committed store's: {n}; identical test accuracy: {same}; mean |Δ| "
        f"{mean:.2f} points, max |Δ| {worst:.2f} points.",
        f"- Committed files under figures/ and notebooks/executed/ that changed: {len(changed)}.",
        "- The suite's own verdict check against the committed claims table:", "", stability, ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--workdir", type=Path, help="where to put the worktree and its store (default: a temp dir)")
    args = parser.parse_args(argv)
    base = args.workdir or Path(tempfile.mkdtemp(prefix="cross-isa-"))
    work, store = base / "checkout", base / "results"
    commit = _git("rev-parse", "--short", "HEAD")
    if not work.exists():
        _git("worktree", "add", "--detach", str(work), "HEAD")
    try:
        wall = run_pass(work, store, base / "suite.log")
        text = report(work, store, wall, commit)
    finally:
        print(f"work folder kept for inspection: {base} (remove with: git worktree remove --force {work})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
