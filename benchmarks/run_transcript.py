"""Real output for the one-run example of the README ("Training runs") and docs/training.md: one mini run through
the CLI, then the store's summary of it.

    python benchmarks/run_transcript.py        # -> benchmarks/results/run_transcript.md (~10 s after make mini)

Both documents include the file verbatim (their include check fails when they differ), so the example is one
transcript, not two hand-copied ones that drift apart. The run trains in a throw-away project home (the shipped mini
backbones linked in), so it never touches this checkout's store; its timing lines come from the machine that wrote
the file, named in the first line.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "run_transcript.md"
COMMANDS = ["python -m adaptertune run --dataset fmnist_target --backbone mini-s --method adapter --rank 16 "
            "--epochs 3 --warmup-epochs 1"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from adaptertune.atomic import atomic_write_bytes
    from adaptertune.paper.suite import ensure_backbones
    from adaptertune.paths import home
    from adaptertune.store.provenance import cpu_model
    from benchmarks.own_images import run_commands

    ensure_backbones("mini")
    work = Path(tempfile.gettempdir()) / "adaptertune-run-transcript"
    shutil.rmtree(work, ignore_errors=True)
    try:
        blocks = run_commands(COMMANDS, work, home())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = (f"Recorded on {cpu_model()} by `python benchmarks/run_transcript.py` "
            "(the results path shortened to `./`):\n\n")
    atomic_write_bytes(args.out, (text + "```text\n" + "\n".join(blocks) + "\n```\n").encode())
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
