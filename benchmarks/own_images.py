"""Real output for the README's "Adapt your own images": export a folder, ``fit`` an adapter and a head on it,
``predict`` with the adapter file, and serve both from one backbone with ``MultiTask``.

    python benchmarks/own_images.py                      # mini profile -> benchmarks/results/own_images.md
    python benchmarks/own_images.py --profile smoke --out /tmp/own_images.md --per-class 60   # plumbing (tests)

Each command runs as a user would type it, in a throw-away work folder that is its own project home (the mini
backbones are linked in from this one; they are pretrained first if missing), so the runs, split files and outputs
never touch this checkout's store. The transcript is written with the work folder shortened to ``.`` and the
thread-count line left out (it names this machine's cores); the README includes the file verbatim, and its include
check fails when the two differ.
"""
from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "own_images.md"
SERVE = '''import adaptertune as at

tasks = {"adapter": "my_adapter/adapters.safetensors", "head": "my_head/adapters.safetensors"}
model = at.MultiTask(at.create_backbone("mini-s", 1{profile}), tasks)   # one frozen backbone, two tasks
result = at.predict(model, at.find_images(["new_images"]))
for task, s in at.score(result, {t: list(model.task(t).class_names) for t in tasks}).items():
    print(f"{task}: {s.accuracy:.2%} of {s.scored} images, {model.task(task).num_classes} classes")
'''


def commands(profile: str, per_class: int) -> list[str]:
    flag = "" if profile == "mini" else f" --profile {profile}"
    return [f"python -m adaptertune.data export fmnist_target --split train --out my_images --per-class {per_class}",
            "python -m adaptertune.data export fmnist_target --split test --out new_images --per-class 4",
            f"python -m adaptertune fit ./my_images --backbone mini-s --out my_adapter{flag}",
            f"python -m adaptertune fit ./my_images --backbone mini-s --method head --out my_head{flag}",
            f"python -m adaptertune predict my_adapter/adapters.safetensors --images new_images --show 2{flag}",
            "python serve.py"]


def run_commands(typed: list[str], work: Path, home: Path) -> list[str]:
    """Run each command as a user would type it in ``work`` (its own project home, the mini backbones linked in) and
    return one ``$ command`` block of output each, the work folder shortened to ``.`` and the thread line left out."""
    (work / "data").mkdir(parents=True, exist_ok=True)
    link = work / "data" / "backbones"
    if not link.exists():
        link.symlink_to(home / "data" / "backbones", target_is_directory=True)
    env = {**os.environ, "ADAPTERTUNE_HOME": str(work), "ADAPTERTUNE_RESULTS": str(work / "results"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    blocks = []
    for command in typed:
        argv = [sys.executable, *shlex.split(command)[1:]]
        done = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, check=False)
        lines = [line for line in (done.stdout + done.stderr).splitlines() if not line.startswith("[threads]")]
        if done.returncode:
            raise RuntimeError(f"`{command}` failed ({done.returncode}):\n" + "\n".join(lines[-20:]))
        shown = "\n".join(lines).replace(str(work.resolve()), ".").replace(str(work), ".")
        blocks.append(f"$ {command}\n{shown}".rstrip())
    return blocks


def transcript(profile: str, per_class: int, work: Path, home: Path) -> str:
    """Run every command in ``work`` (its own project home) and return the Markdown transcript."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "serve.py").write_text(SERVE.replace("{profile}", "" if profile == "mini" else f', profile="{profile}"'))
    blocks = run_commands(commands(profile, per_class), work, home)
    if "serve.py" in commands(profile, per_class)[-1]:
        blocks.insert(len(blocks) - 1, "$ cat serve.py\n" + (work / "serve.py").read_text().rstrip())
    return "```text\n" + "\n".join(blocks) + "\n```\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="mini", choices=("mini", "smoke"))
    parser.add_argument("--per-class", type=int, default=200, help="training images exported per class")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--workdir", type=Path,
                        help="work folder to use and keep (default: a fixed temporary one, emptied before and after)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from adaptertune.atomic import atomic_write_bytes
    from adaptertune.paper.suite import ensure_backbones
    from adaptertune.paths import home

    ensure_backbones(args.profile)
    if args.workdir:
        text = transcript(args.profile, args.per_class, args.workdir, home())
    else:  # a fixed, emptied path: a folder's run ids include its absolute path, so the transcript's ids are stable
        work = Path(tempfile.gettempdir()) / f"adaptertune-own-images-{args.profile}"
        shutil.rmtree(work, ignore_errors=True)
        try:
            text = transcript(args.profile, args.per_class, work, home())
        finally:
            shutil.rmtree(work, ignore_errors=True)
    atomic_write_bytes(args.out, text.encode())
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
