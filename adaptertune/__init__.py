"""adaptertune: zero-initialised low-rank adapters for frozen timm Vision Transformers.

``import adaptertune`` loads the library floor only (adapters, injection, regimes, backbones, adapter files, run
configs, the multi-task model and inference on image files). The floors above it — ``training`` (``at.run``, ``at.sweep``), ``store`` (``at.load_results``) and
``paper`` (tables, verdicts, plots, the notebook suite) — load on first use of one of their names.
"""
from __future__ import annotations

import importlib
from typing import Any

from ._version import __version__
from .adapter import Adapter, AdapterConfig
from .adapter_files import AdapterFile, backbone_fingerprint, load_adapters, open_adapter_file, save_adapters
from .backbones import PretrainedWeightsError, backbone_info, create_backbone, data_config
from .config import RunConfig
from .inference import ImageItem, Predictions, eval_transform, find_images, predict, score, write_predictions
from .inject import add_adapters, adapter_config, adapter_modules
from .multitask import BlockCost, MultiTask, TaskInfo
from .recompute import recompute_frozen_mlps
from .regimes import REGIMES, ParamCount, Regime, count_parameters, expected_trainable, prepare, register

# public name -> module that defines it, imported on first access (PEP 562)
_LAZY = {
    "run": "adaptertune.training.run",
    "sweep": "adaptertune.training.sweep",
    "load_results": "adaptertune.store.table",
    "load_model": "adaptertune.store.models",
    "fit": "adaptertune.paper.fit",
    "advise": "adaptertune.paper.advisor",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'adaptertune' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "REGIMES", "Regime", "register", "Adapter", "AdapterConfig", "AdapterFile", "BlockCost", "ImageItem", "MultiTask", "ParamCount",
    "Predictions", "PretrainedWeightsError", "RunConfig", "TaskInfo", "__version__", "adapter_config", "adapter_modules",
    "add_adapters", "backbone_fingerprint", "backbone_info", "count_parameters", "create_backbone", "data_config",
    "advise", "eval_transform", "expected_trainable", "find_images", "fit", "load_adapters", "load_model", "load_results",
    "open_adapter_file", "predict", "prepare", "recompute_frozen_mlps", "run", "save_adapters", "score", "sweep",
    "write_predictions",
]
