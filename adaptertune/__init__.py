"""adaptertune: zero-initialised low-rank adapters for frozen timm Vision Transformers."""
__version__ = "0.1.0"

from .adapter import Adapter, AdapterConfig  # noqa: E402
from .inject import add_adapters, adapter_config, adapter_modules  # noqa: E402
from .regimes import METHODS, ParamCount, count_parameters, expected_trainable, prepare  # noqa: E402
from .backbones import PretrainedWeightsError, backbone_info, create_backbone, data_config  # noqa: E402
from .adapter_files import backbone_fingerprint, load_adapters, save_adapters  # noqa: E402
from .recompute import recompute_frozen_mlps  # noqa: E402
from .config import RunConfig  # noqa: E402
from .results import load_results  # noqa: E402
from .train import run  # noqa: E402
from .sweep import sweep  # noqa: E402  (the function; the module stays importable as adaptertune.sweep)

__all__ = [
    "Adapter", "AdapterConfig", "METHODS", "ParamCount", "PretrainedWeightsError", "__version__", "add_adapters",
    "adapter_config", "adapter_modules", "backbone_fingerprint", "backbone_info", "count_parameters",
    "create_backbone", "data_config", "expected_trainable", "load_adapters", "prepare", "recompute_frozen_mlps",
    "save_adapters",
    "RunConfig", "load_results", "run", "sweep",
]
