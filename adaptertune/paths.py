"""Where things live on disk.

Every path is resolved from the repository root (or ``$ADAPTERTUNE_HOME`` when set), never relative to
the current directory, so notebooks, papermill, the CLI and tests agree regardless of where they run.
"""
from __future__ import annotations

import os
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def repo_root() -> Path:
    """The project root: ``$ADAPTERTUNE_HOME`` if set, else the checkout that holds this package."""
    env = os.environ.get("ADAPTERTUNE_HOME")
    return Path(env).expanduser().resolve() if env else _PACKAGE_DIR.parent


def data_dir() -> Path:
    """Datasets, split files and cached mini backbones (``data/``)."""
    return repo_root() / "data"


def splits_dir() -> Path:
    return data_dir() / "splits"


def backbones_dir() -> Path:
    """Cached self-pretrained mini backbones (safetensors + provenance JSON)."""
    return data_dir() / "backbones"


def results_dir() -> Path:
    """The run store (``results/runs/<run_id>/``)."""
    env = os.environ.get("ADAPTERTUNE_RESULTS")
    return Path(env).expanduser().resolve() if env else repo_root() / "results"


def figures_dir() -> Path:
    return repo_root() / "figures"


def notebooks_dir() -> Path:
    return repo_root() / "notebooks"
