"""Where things live on disk: one project home, never the current directory by accident, never site-packages.

The home is ``$ADAPTERTUNE_HOME`` when set; otherwise the checkout that holds this package (an editable install
or ``python -m`` from the repository); otherwise — an installed package — the current directory. Every path
(data, results, figures, notebooks) is resolved from it, so notebooks, papermill, the CLI and tests agree.
"""
from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "ADAPTERTUNE_HOME"
RESULTS_ENV = "ADAPTERTUNE_RESULTS"
_PACKAGE_DIR = Path(__file__).resolve().parent


def checkout_root() -> Path | None:
    """The repository this package was loaded from, or None for an installed (non-editable) package."""
    parent = _PACKAGE_DIR.parent
    return parent if (parent / "pyproject.toml").is_file() and (parent / "notebooks").is_dir() else None


def home() -> Path:
    """The project home: ``$ADAPTERTUNE_HOME``, else the checkout, else the current directory."""
    env = os.environ.get(HOME_ENV)
    if env:
        return Path(env).expanduser().resolve()
    return checkout_root() or Path.cwd().resolve()


def data_dir() -> Path:
    """Datasets, split files and cached mini backbones (``data/``)."""
    return home() / "data"


def splits_dir() -> Path:
    return data_dir() / "splits"


def backbones_dir() -> Path:
    """Cached self-pretrained mini backbones (safetensors + provenance JSON)."""
    return data_dir() / "backbones"


def results_dir() -> Path:
    """The run store (``results/runs/<run_id>/``); ``$ADAPTERTUNE_RESULTS`` moves it on its own."""
    env = os.environ.get(RESULTS_ENV)
    return Path(env).expanduser().resolve() if env else home() / "results"


def figures_dir() -> Path:
    return home() / "figures"


def notebooks_dir() -> Path:
    return home() / "notebooks"


def looks_like_path(name: str) -> bool:
    """The one rule for "this dataset/backbone name is a path": it has a separator or starts with ``.`` or ``~``.

    Purely syntactic, so a config's identity never depends on the current directory or on what exists there;
    a bare folder name is written ``./name``.
    """
    return "/" in name or "\\" in name or name.startswith((".", "~"))


__all__ = ["HOME_ENV", "RESULTS_ENV", "backbones_dir", "checkout_root", "data_dir", "figures_dir", "home",
           "looks_like_path", "notebooks_dir", "results_dir", "splits_dir"]
