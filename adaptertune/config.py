"""``RunConfig``: one training run, validated on construction so a typo fails before any work starts.

Defaults are the paper's recipe (PAPER.md, Experimental protocol): AdamW, lr 1e-3, weight decay 0.05 on
*every* trainable tensor including biases and norm weights (the authors' code; ``decay_all=False`` exempts
1-D tensors instead), batch 128, per-step cosine with 5 linear warm-up epochs, clip 1.0, 50 epochs, fp32.
The ``run_id`` hashes only the fields that change what is computed, plus digests of the backbone weights and the
split definition (``digests``), so re-running the same experiment with more data-loader workers or a progress bar
finds the same run in the store, and a re-pretrained backbone or a changed split does not.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .adapter import AdapterConfig
from .backbones import ALIASES, create_backbone
from .paths import looks_like_path
from .profiles import PROFILES
from .regimes import regime
from .seeds import derive_seed

# fp32: strict fp32, TF32 off (the paper's recipe); tf32: fp32 tensors, TF32 matmuls and convolutions on CUDA;
# bf16: bf16 autocast, TF32 for what autocast leaves in fp32 (the paper profile's fast recipe, a documented deviation).
# On CPU tf32 computes exactly what fp32 does; each is its own run id all the same (it is what was asked for).
PRECISIONS = ("fp32", "tf32", "bf16")
HEAD_MODES = ("augmented", "cached_features")
ADAPTER_FIELDS = AdapterConfig.field_names()
# Share of the differentiated frozen MLPs an adapter run recomputes in backward by default: the cheapest variant that
# meets the memory target (<= 0.6x full FT on ViT-S/16 @ 32) at <= 10% throughput cost in benchmarks/results/targets.md.
RECOMPUTE_DEFAULT = 0.5
# Fields that do not change what a run computes (up to float reordering); left out of the run_id.
NON_SEMANTIC = ("num_workers", "log_every", "compile", "device", "eval_batch_size", "recompute_frozen_mlp",
                "snapshot_epochs")


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines one run; see the module docstring for the recipe behind the defaults."""

    dataset: str
    backbone: str
    method: str
    # the adapter fields and their defaults are AdapterConfig's (None for head/full once resolved)
    rank: int | None = AdapterConfig.rank
    every: int | None = AdapterConfig.every
    scale: float | None = AdapterConfig.scale
    init: str | None = AdapterConfig.init
    init_std: float | None = AdapterConfig.init_std
    start: int | None = AdapterConfig.start
    epochs: int = 50
    lr: float = 1e-3
    weight_decay: float = 0.05
    decay_all: bool = True
    batch_size: int = 128
    warmup_epochs: float = 5
    grad_clip: float | None = 1.0
    seed: int = 0
    precision: str = "fp32"
    profile: str = "mini"
    pretrained: bool = True
    checkpoint: str | None = None
    val_fraction: float = 0.1
    limit: int | None = None
    head_mode: str = "augmented"
    augment: bool = True
    # crop the training batches on the run's device from one uint8 tensor (data.device_path) instead of per image in
    # PIL; None = the default: on for the paper profile's in-memory sets (registry.IN_MEMORY_SETS) when augmenting
    augment_on_device: bool | None = None
    train_eval_limit: int = 4096
    # False: scored on validation only, with no test or clean-train evaluation at the end (a learning-rate proxy run,
    # training.selection.proxy_config): its test metrics are None
    final_eval: bool = True
    compile: bool = False
    recompute_frozen_mlp: float | None = None  # share of the frozen MLPs recomputed (true = 1); None = the default
    num_workers: int | None = 0  # None: the cores per GPU on CUDA (training.run.resolve_workers), 0 on CPU
    log_every: int = 10
    snapshot_epochs: tuple[int, ...] = ()  # also keep the weights after these epochs (mini pretraining's dose points)
    device: str | None = None
    eval_batch_size: int | None = None

    def __post_init__(self) -> None:
        _check_str(self, "dataset")
        _check_str(self, "backbone")
        if not isinstance(self.method, str):
            raise ValueError(f"method={self.method!r} is not allowed: use a registered regime's name")
        kind = regime(self.method)  # an unknown name raises, listing the registered regimes
        _check_choice(self, "precision", PRECISIONS)
        _check_choice(self, "profile", PROFILES)
        _check_choice(self, "head_mode", HEAD_MODES)
        if not isinstance(self.final_eval, bool):
            raise ValueError(f"final_eval={self.final_eval!r} is not allowed: use true or false")
        if self.head_mode == "cached_features" and not kind.probe:
            raise ValueError(f"head_mode='cached_features' is not allowed with method={self.method!r}: it is a "
                             "linear probe on frozen features and needs method='head' (or use head_mode='augmented')")
        if kind.adapter_options:
            missing = [f for f in ADAPTER_FIELDS if getattr(self, f) is None]
            if missing:
                raise ValueError(f"method='adapter' needs {missing} (got None)")
            AdapterConfig(**{f: getattr(self, f) for f in ADAPTER_FIELDS})  # raises with the allowed values
        for name in ("epochs", "batch_size", "train_eval_limit"):
            _check_int(self, name, minimum=1)
        for name in ("seed", "log_every"):
            _check_int(self, name, minimum=0)
        _check_int(self, "num_workers", minimum=0, optional=True)
        _check_int(self, "limit", minimum=1, optional=True)
        _check_int(self, "eval_batch_size", minimum=1, optional=True)
        _check_float(self, "lr", lambda v: v > 0, "> 0")
        _check_float(self, "weight_decay", lambda v: v >= 0, ">= 0")
        _check_float(self, "warmup_epochs", lambda v: 0 <= v <= self.epochs,
                     f"between 0 and epochs={self.epochs} (the paper warms up 5 of 50 epochs; for a short run pass "
                     "e.g. warmup_epochs=1, --warmup-epochs 1 on the command line)")
        _check_float(self, "grad_clip", lambda v: v > 0, "> 0 (None turns clipping off)", optional=True)
        _check_float(self, "val_fraction", lambda v: 0 < v < 1, "strictly between 0 and 1")
        for name in ("decay_all", "pretrained", "augment", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}={getattr(self, name)!r} is not allowed: use true or false")
        _check_device_augment(self)
        share = self.recompute_frozen_mlp
        if share is not None and not (isinstance(share, (int, float)) and 0 <= share <= 1):
            raise ValueError(f"recompute_frozen_mlp={share!r} is not allowed: use a share in [0, 1] of the frozen MLPs "
                             f"(true = 1, false = 0) or leave it unset (adapter runs: {RECOMPUTE_DEFAULT})")
        if share and not kind.recompute:
            raise ValueError(f"recompute_frozen_mlp={share!r} is not allowed with method={self.method!r}: it "
                             "recomputes frozen MLPs between adapters and needs method='adapter'")
        _check_str(self, "checkpoint", optional=True)
        _check_str(self, "device", optional=True)
        if not isinstance(self.snapshot_epochs, tuple) or not all(
                isinstance(e, int) and not isinstance(e, bool) and 1 <= e < self.epochs for e in self.snapshot_epochs):
            raise ValueError(f"snapshot_epochs={self.snapshot_epochs!r} is not allowed: use a tuple of epochs "
                             "between 1 "
                             f"and epochs-1={self.epochs - 1} (the last epoch's weights are kept anyway)")

    # -- construction from files / dicts -------------------------------------------------------------
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        """Build from a JSON/YAML mapping; unknown keys are an error (a typo would otherwise be ignored)."""
        if not isinstance(data, dict):
            raise ValueError(f"a run config must be a mapping, got {type(data).__name__}")
        unknown = sorted(set(data) - set(cls.field_names()))
        if unknown:
            raise ValueError(f"unknown config key(s) {unknown}: allowed keys are {cls.field_names()}")
        return cls(**{k: _coerce(k, v) for k, v in data.items()})

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping (tuples as lists; ``from_dict`` reads them back)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def with_(self, **changes: Any) -> RunConfig:
        return replace(self, **changes)

    # -- identity -------------------------------------------------------------------------------------
    def resolved(self) -> RunConfig:
        """Canonical form: adapter fields are None unless method='adapter'; backbone aliases become timm names
        (``vit-s16`` and ``vit_small_patch16_224`` are one run); local paths made absolute."""
        changes: dict[str, Any] = {"backbone": ALIASES.get(self.backbone, self.backbone)}
        if not regime(self.method).adapter_options:
            changes |= {f: None for f in ADAPTER_FIELDS}
        if self.checkpoint is not None:
            changes["checkpoint"] = str(Path(self.checkpoint).expanduser().resolve())
        if looks_like_path(self.dataset):
            changes["dataset"] = str(Path(self.dataset).expanduser().resolve())
        changes["augment_on_device"] = device_augment_default(self) if self.augment_on_device is None \
            else self.augment_on_device
        for name in _FLOAT_FIELDS:
            value = changes.get(name, getattr(self, name))
            if value is not None:
                changes[name] = float(value)
        return replace(self, **changes)

    @property
    def recompute_share(self) -> float:
        """The share of the differentiated frozen MLPs this run recomputes (0 for head-only and full FT)."""
        if not regime(self.method).recompute:
            return 0.0
        return RECOMPUTE_DEFAULT if self.recompute_frozen_mlp is None else float(self.recompute_frozen_mlp)

    def semantic_dict(self) -> dict[str, Any]:
        """The resolved fields that decide what is computed. ``augment_on_device`` counts only when on: off is the
        per-image PIL path every run had before the field existed, so those run ids do not move; ``final_eval`` only
        when off, for the same reason."""
        data = self.resolved().to_dict()
        if not data["augment_on_device"]:
            data.pop("augment_on_device")
        if data["final_eval"]:
            data.pop("final_eval")
        return {k: v for k, v in data.items() if k not in NON_SEMANTIC}

    def input_digests(self) -> dict[str, str]:
        """Digests of the backbone weights and the split definition this run starts from (``digests``)."""
        from .digests import input_digests  # lazy: digests reads the data registry, whose package imports config

        cfg = self.resolved()
        return input_digests(cfg.backbone, cfg.pretrained, cfg.checkpoint, cfg.profile, cfg.dataset)

    @property
    def run_id(self) -> str:
        """12 hex digits of SHA-256 over the resolved semantic fields and the input digests: a re-pretrained backbone
        or a changed split definition is another run."""
        payload = {**self.semantic_dict(), "inputs": self.input_digests()}
        blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def adapter_options(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in ADAPTER_FIELDS} if regime(self.method).adapter_options else {}

    def adapter_config(self) -> AdapterConfig | None:
        """The run's adapters as an :class:`AdapterConfig` (None unless method='adapter')."""
        return AdapterConfig(**self.adapter_options()) if regime(self.method).adapter_options else None


def seeded_backbone(cfg: RunConfig, num_classes: int) -> nn.Module:
    """The run's backbone under the run's init seed: training and the store's ``load_model`` build it the same way,
    so a ``pretrained=False`` backbone is rebuilt exactly. Seeds torch's global RNG (the adapters drawn next in
    ``prepare`` continue from it)."""
    torch.manual_seed(derive_seed(cfg.seed, "init"))
    return create_backbone(cfg.backbone, num_classes, pretrained=cfg.pretrained, checkpoint=cfg.checkpoint,
                           profile=cfg.profile)


def device_augment_default(cfg: RunConfig) -> bool:
    """Whether ``cfg`` crops on the device when it does not say: yes for an augmented paper-profile run on an
    in-memory set (the crops would otherwise be the GPU's bottleneck), no everywhere else (mini and smoke sets are
    tensors with their own batch augmentation; JPEG sets are decoded per image anyway)."""
    from .data.registry import IN_MEMORY_SETS  # lazy: the data package imports this module

    return (cfg.profile == "paper" and cfg.dataset in IN_MEMORY_SETS and cfg.augment
            and cfg.head_mode == "augmented")


def _check_device_augment(cfg: RunConfig) -> None:
    value = cfg.augment_on_device
    if value is None or value is False:
        return
    if value is not True:
        raise ValueError(f"augment_on_device={value!r} is not allowed: use true, false or leave it unset")
    from .data.registry import IN_MEMORY_SETS

    if cfg.profile != "paper" or cfg.dataset not in IN_MEMORY_SETS:
        raise ValueError(f"augment_on_device=True is not allowed for dataset={cfg.dataset!r} in profile="
                         f"{cfg.profile!r}: device crops are for the paper profile's in-memory sets {IN_MEMORY_SETS}")
    if not cfg.augment or cfg.head_mode != "augmented":
        raise ValueError("augment_on_device=True is not allowed with augment=False or head_mode='cached_features': "
                         "such a run does not augment")


def _check_str(cfg: RunConfig, name: str, optional: bool = False) -> None:
    value = getattr(cfg, name)
    if value is None and optional:
        return
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name}={value!r} is not allowed: use a non-empty string" + (" or None" if optional else ""))


def _check_choice(cfg: RunConfig, name: str, allowed: tuple[str, ...]) -> None:
    value = getattr(cfg, name)
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not allowed: choose one of {allowed}")


def _check_int(cfg: RunConfig, name: str, minimum: int, optional: bool = False) -> None:
    value = getattr(cfg, name)
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        suffix = " or None" if optional else ""
        raise ValueError(f"{name}={value!r} is not allowed: use an integer >= {minimum}{suffix}")


def _check_float(cfg: RunConfig, name: str, ok, allowed: str, optional: bool = False) -> None:
    value = getattr(cfg, name)
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not ok(value):
        raise ValueError(f"{name}={value!r} is not allowed: use a finite number {allowed}")


_FLOAT_FIELDS = {"scale", "init_std", "lr", "weight_decay", "warmup_epochs", "grad_clip", "val_fraction",
                 "recompute_frozen_mlp"}


def _coerce(name: str, value: Any) -> Any:
    """YAML reads ``1e-3`` as a string (YAML 1.1); accept numeric strings for float fields only. JSON and YAML give
    lists where the config holds tuples."""
    if name == "snapshot_epochs" and isinstance(value, list):
        return tuple(value)
    if name in _FLOAT_FIELDS and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"{name}={value!r} is not allowed: use a number") from None
    return value


__all__ = ["ADAPTER_FIELDS", "HEAD_MODES", "NON_SEMANTIC", "PRECISIONS", "PROFILES", "RunConfig",
           "device_augment_default", "seeded_backbone"]
