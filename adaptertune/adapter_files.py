"""Adapter files: only the trained tensors (adapters + head, or any regime's trained tensors + head) in safetensors,
with enough metadata to refuse a file that does not belong to the model it is loaded onto, and to use it for inference
(class names, the input config the adapters were trained with). Never unpickled.

Metadata added later (``data_config``) is optional when reading: older files load as before, and the field is
an error only where it is needed (:meth:`AdapterFile.require_class_names`).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn

from ._version import __version__
from .atomic import atomic_save_safetensors
from .adapter import AdapterConfig
from .backbones import backbone_info, data_config as backbone_data_config
from .data.transforms import check_data_config
from .inject import adapter_config, embed_dim, transformer_blocks
from .lora import backbone_tensor_name
from .regimes import (classifier, head_parameter_names, is_added_parameter, prepare, prepared_method, regime,
                      regime_options)

FORMAT = "adaptertune-adapters/1"


def backbone_fingerprint(model: nn.Module, trained: set[str] | frozenset[str] = frozenset()) -> str:
    """SHA-256 over the frozen backbone's tensors (names as the bare timm model spells them, dtypes, shapes, bytes):
    the head, tensors a regime adds (adapters, LoRA factors) and ``trained`` (a file's tensors, e.g. BitFit's biases)
    excluded."""
    skip = set(head_parameter_names(model)) | set(trained)
    digest = hashlib.sha256()
    named = {backbone_tensor_name(n): t for n, t in model.state_dict().items() if not is_added_parameter(n)}
    for name, tensor in sorted(named.items()):
        if name in skip:
            continue
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        digest.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def trained_tensor_names(model: nn.Module) -> list[str]:
    """Names of what an adapter file holds: the classifier head, every tensor a regime added (adapters, LoRA) and
    whatever else trains (BitFit's biases), as the bare backbone names them."""
    heads = set(head_parameter_names(model))
    return [n for n, p in model.named_parameters() if n in heads or is_added_parameter(n) or p.requires_grad]


def save_adapters(model: nn.Module, path: str | Path, class_names: list[str] | None = None,
                  data_config: dict | None = None) -> Path:
    """Write the trained tensors (adapters, LoRA factors, biases; + head) of a prepared model to ``path`` atomically.

    ``class_names``: one per output of the head (what ``predict`` prints). ``data_config``: the input config the
    model was trained with (timm's resolved form: input_size, mean, std, crop_pct, interpolation); default the
    backbone's own, which is what every adaptertune run uses.
    """
    method = prepared_method(model) or ("adapter" if adapter_config(model) else None)
    if method is None or regime(method).whole_model:
        raise ValueError(f"save_adapters needs a model prepared with a regime that keeps its backbone frozen, got "
                         f"{method!r}; a fully fine-tuned model is saved whole by the training checkpoints")
    outputs = int(classifier(model).weight.shape[0])
    if class_names is not None and len(class_names) != outputs:
        raise ValueError(f"class_names has {len(class_names)} names but the head has {outputs} outputs")
    params = dict(model.named_parameters())
    tensors = {backbone_tensor_name(n): params[n].detach().to("cpu").contiguous() for n in trained_tensor_names(model)}
    cfg = adapter_config(model)
    info = backbone_info(model)
    meta = {
        "format": FORMAT, "method": method, "adapter_config": json.dumps(cfg.to_dict() if cfg else None),
        "backbone": str(info.get("name", "")), "backbone_architecture": str(info.get("architecture", "")),
        "backbone_tag": str(info.get("tag", "")), "backbone_fingerprint": backbone_fingerprint(model, set(tensors)),
        "regime_options": json.dumps(regime_options(model)), "head_names": json.dumps(head_parameter_names(model)),
        "embed_dim": str(embed_dim(model)), "depth": str(len(transformer_blocks(model))),
        "class_names": json.dumps([str(c) for c in class_names] if class_names is not None else None),
        "data_config": json.dumps(check_data_config(data_config if data_config is not None
                                                    else backbone_data_config(model))),
        "adaptertune_version": __version__,
    }
    return atomic_save_safetensors(tensors, path, metadata=meta)


def read_adapter_file(path: str | Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """Metadata and tensors of an adapter file; anything unreadable is a ValueError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"adapter file {path} does not exist: pass the path of a file save_adapters wrote (a run's is "
                         "results/runs/<run_id>/adapters.safetensors; `python -m adaptertune results` lists the runs)")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:  # safetensors raises its own error types for truncation/corruption
        raise ValueError(f"{path} is not a readable safetensors adapter file (corrupt or truncated?): {err}") from err
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not an adaptertune adapter file: format={meta.get('format')!r}, "
                         f"expected {FORMAT!r}")
    return meta, tensors


@dataclass(frozen=True)
class AdapterFile:
    """One adapter file, parsed: what was trained, on which backbone, and what inference needs to use it."""

    path: Path
    method: str  # a registered regime whose file is not the whole model (head, adapter, lora, bitfit, ...)
    config: AdapterConfig | None  # None unless the regime takes adapter options
    backbone: str
    backbone_tag: str
    fingerprint: str
    class_names: list[str] | None  # None: the file was saved without a class-name table
    data_config: dict | None  # None: written before adapter files recorded it
    tensors: dict[str, torch.Tensor] = field(repr=False)
    options: dict = field(default_factory=dict)  # the regime's own options (LoRA's ranks); {} for head and adapter
    head_names: tuple[str, ...] | None = None  # None: written before files named their head tensors

    @property
    def prepare_options(self) -> dict:
        """What ``prepare`` needs to rebuild the trained modules on a fresh backbone."""
        return self.config.to_dict() if self.config is not None else dict(self.options)

    @property
    def head_tensors(self) -> dict[str, torch.Tensor]:
        if self.head_names is not None:
            return {k: v for k, v in self.tensors.items() if k in self.head_names}
        return {k: v for k, v in self.tensors.items() if not is_added_parameter(k)}  # files from before head_names

    @property
    def num_classes(self) -> int:
        weights = [v for v in self.head_tensors.values() if v.ndim == 2]
        if len(weights) != 1:
            raise ValueError(f"{self.path}: expected one 2-D head weight, found {sorted(self.head_tensors)}")
        return int(weights[0].shape[0])

    def check_backbone(self, fingerprint: str) -> None:
        """Refuse a backbone whose frozen weights differ from the ones the file was trained on."""
        if fingerprint != self.fingerprint:
            tag = f" (tag {self.backbone_tag})" if self.backbone_tag else ""
            raise ValueError(f"{self.path} was trained on another backbone: {self.backbone or 'unnamed'}{tag} with "
                             f"fingerprint {self.fingerprint[:12]}…, but this model's frozen weights have fingerprint "
                             f"{fingerprint[:12]}…; load it onto the backbone it was trained on")

    def require_class_names(self) -> list[str]:
        if self.class_names is None:
            raise ValueError(f"{self.path} has no class-name table: pass the class names (one per output, "
                             f"{self.num_classes} in all; the CLI's --class-names) or retrain to record them")
        return list(self.class_names)


def open_adapter_file(path: str | Path) -> AdapterFile:
    """Read and parse an adapter file; a malformed metadata field is a ValueError naming the file and the field."""
    meta, tensors = read_adapter_file(path)
    try:
        raw_cfg = json.loads(meta["adapter_config"])
        class_names = json.loads(meta.get("class_names") or "null")
        data_cfg = json.loads(meta.get("data_config") or "null")
        options = json.loads(meta.get("regime_options") or "{}")
        heads = json.loads(meta.get("head_names") or "null")
        parsed = AdapterFile(
            path=Path(path), method=meta["method"], config=AdapterConfig(**raw_cfg) if raw_cfg else None,
            backbone=meta.get("backbone", ""), backbone_tag=meta.get("backbone_tag", ""),
            fingerprint=meta["backbone_fingerprint"], class_names=class_names,
            data_config=check_data_config(data_cfg) if data_cfg is not None else None, tensors=tensors,
            options=dict(options), head_names=tuple(heads) if heads is not None else None)
    except (KeyError, TypeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: the adapter file's metadata is incomplete or malformed "
                         f"({type(err).__name__}: {err})") from err
    kind = regime(parsed.method) if isinstance(parsed.method, str) and parsed.method else None
    if kind is None or kind.whole_model or kind.adapter_options != (parsed.config is not None):
        raise ValueError(f"{path}: method={parsed.method!r} with adapter_config={raw_cfg!r} is not a valid adapter "
                         "file")
    if class_names is not None and len(class_names) != parsed.num_classes:
        raise ValueError(f"{path}: {len(class_names)} class names for a head with {parsed.num_classes} outputs")
    return parsed


def _expected_shapes(model: nn.Module, file: AdapterFile, num_classes: int | None = None) -> dict[str, tuple[int, ...]]:
    params = dict(model.named_parameters())
    shapes = {n: tuple(params[n].shape) for n in head_parameter_names(model)}
    if num_classes is not None:  # the head's outputs are the file's, its input width the model's
        shapes = {n: (num_classes,) + s[1:] for n, s in shapes.items()}
    return shapes | regime(file.method).shapes_in_file(model, file.prepare_options)


def load_adapters(model: nn.Module, path: str | Path) -> nn.Module:
    """Restore a file written by :func:`save_adapters` onto ``model`` (a fresh backbone or a matching one).

    Everything is checked before anything is changed, so a refused file leaves the model as it was.
    """
    file = open_adapter_file(path)
    method, cfg, tensors = file.method, file.config, file.tensors
    file.check_backbone(backbone_fingerprint(model, set(tensors)))
    current, current_method = adapter_config(model), prepared_method(model)
    if current is not None and current != cfg:
        raise ValueError(f"{path} holds adapters {cfg} but the model has {current}")
    if current_method is not None and current_method != method:
        raise ValueError(f"{path} holds a {method!r} model but the model was prepared for {current_method!r}")
    check_fits(model, file)
    if current_method is None:
        prepare(model, method, **({} if current is not None else file.prepare_options))
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in tensors.items():
            params[name].copy_(value)
    return model


def check_fits(model: nn.Module, file: AdapterFile, any_head_size: bool = False) -> None:
    """The file's tensors are exactly the adapters + head this backbone would have with the file's config.

    ``any_head_size``: the model's own head only gives the tensor names and width (a shared backbone that serves
    heads of every size).
    """
    cfg = file.config
    if cfg is not None:
        dim, depth = embed_dim(model), len(transformer_blocks(model))
        if cfg.rank > dim or cfg.start >= depth:
            raise ValueError(f"{file.path} has rank={cfg.rank}, start={cfg.start}; this model has embed_dim={dim}, "
                             f"depth={depth}")
    expected = _expected_shapes(model, file, file.num_classes if any_head_size else None)
    got = {k: tuple(v.shape) for k, v in file.tensors.items()}
    if got != expected:
        in_file = sorted(set(got.items()) - set(expected.items()))[:4]
        in_model = sorted(set(expected.items()) - set(got.items()))[:4]
        raise ValueError(f"{file.path} does not fit this model: the file holds {in_file or 'nothing else'} where this "
                         f"model expects {in_model or 'nothing else'} (name, shape); check num_classes, rank and "
                         "placement")
