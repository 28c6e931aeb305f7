"""The per-process settings of ``sweep`` and the suite as command-line options, kept apart from the sweep so that
``python -m adaptertune --help`` builds its parser without importing the training stack (config is loaded anyway)."""
from __future__ import annotations

import argparse
from typing import Any

from ..config import PRECISIONS


def add_settings_options(parser: argparse.ArgumentParser) -> None:
    """``--device``, ``--num-workers``, ``--compile`` of ``sweep`` and the suite: where and how this process trains
    its runs. None of them changes a run id (``config.NON_SEMANTIC``); unset leaves each config's own value."""
    parser.add_argument("--device", help="cpu, cuda, cuda:N (default: cuda:$LOCAL_RANK when set, else cuda when "
                        "available; the paper profile refuses a CPU unless --device cpu)")
    parser.add_argument("--num-workers", type=int, help="data-loader worker processes per run")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="torch.compile the forward pass")


def add_precision_option(parser: argparse.ArgumentParser) -> None:
    """``--precision``: unlike the settings above it changes what runs compute, so it changes their run ids."""
    parser.add_argument("--precision", choices=PRECISIONS,
                        help="numerics of every run: fp32 (the paper's recipe), tf32, bf16 (autocast + TF32; the "
                             "paper profile's default); a grid's runs get new run ids")


def settings_from(args: argparse.Namespace) -> dict[str, Any]:
    """The options of :func:`add_settings_options` as keywords of :func:`with_settings`."""
    return {"device": args.device, "num_workers": args.num_workers, "compile": args.compile}


__all__ = ["add_precision_option", "add_settings_options", "settings_from"]
