"""What a result needs to be traceable: code version, package versions, device, peak memory.

Peak memory on CPU is the process's peak resident set size (``resource.getrusage(...).ru_maxrss``): a
high-water mark of the whole process since it started, so in a sweep run in one process it is the
maximum over this run *and every run before it*. On GPU it is ``torch.cuda.max_memory_allocated`` for
this run only (reset at the start of each run); it excludes the CUDA context and allocator caching.
"""
from __future__ import annotations

import platform
import resource
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import numpy
import timm
import torch
import torchvision

from .._version import __version__
from ..paths import checkout_root, home


@lru_cache(maxsize=1)
def git_state() -> dict:
    """``{"git_sha": str | None, "git_dirty": bool | None}`` of the checkout holding this package (None installed)."""
    cwd = checkout_root()
    if cwd is None:
        return {"git_sha": None, "git_dirty": None}
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:  # not a checkout, or a repository without commits yet
            return {"git_sha": None, "git_dirty": None}
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                                capture_output=True, text=True, timeout=20)
        return {"git_sha": sha.stdout.strip(), "git_dirty": bool(status.stdout.strip()) if status.returncode == 0 else None}
    except (OSError, subprocess.SubprocessError):
        return {"git_sha": None, "git_dirty": None}


def package_versions() -> dict:
    return {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
            "timm": timm.__version__, "numpy": numpy.__version__, "adaptertune": __version__}


def cpu_model() -> str:
    """The CPU's model name: Intel and AMD machines train at other speeds and pretrain slightly different weights, so
    every timing and every cross-machine comparison names it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> float:
    """See the module docstring for what this measures on CPU vs GPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB on Linux


def environment() -> dict:
    """Everything but the device, gathered once per run for result.json."""
    return {**git_state(), "versions": package_versions(), "home": str(home()), "argv": list(sys.argv),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu_model": cpu_model()}


__all__ = ["cpu_model", "device_name", "environment", "git_state", "package_versions", "peak_memory_mb", "reset_peak_memory"]
