"""The three training regimes of the paper and what each one lets train.

Frozen modules are pinned to eval mode, even under ``model.train()``: a frozen backbone must compute the
same function it was pretrained to compute, so its dropout/drop-path stay off and any norm running
statistics never drift. Parameter-free modules outside the adapters (e.g. ``pos_drop``, ``head_drop``)
count as frozen too. Full fine-tuning changes nothing: every module follows ``model.train()``.
"""
from __future__ import annotations

import types
from typing import NamedTuple

from torch import nn

from .adapter import Adapter
from .inject import ADAPTER_ATTR, add_adapters, adapter_config, is_adapter_parameter, transformer_blocks

METHODS = ("head", "full", "adapter")
METHOD_ATTR = "adaptertune_method"


class ParamCount(NamedTuple):
    trainable: int
    total: int

    @property
    def fraction(self) -> float:
        return self.trainable / self.total if self.total else 0.0


def classifier(model: nn.Module) -> nn.Module:
    """The linear head on [CLS] (timm's ``get_classifier``); an Identity head is refused."""
    getter = getattr(model, "get_classifier", None)
    head = getter() if callable(getter) else getattr(model, "head", None)
    if not isinstance(head, nn.Module) or next(head.parameters(), None) is None:
        raise ValueError(
            f"model of type {type(model).__name__} has no trainable classifier head; create it with num_classes > 0"
        )
    return head


def head_parameter_names(model: nn.Module) -> list[str]:
    head = classifier(model)
    for prefix, module in model.named_modules():
        if module is head:
            return [f"{prefix}.{n}" if prefix else n for n, _ in head.named_parameters()]
    raise ValueError("the classifier head is not a submodule of the model")


def _always_eval(self: nn.Module, mode: bool = True) -> nn.Module:
    return nn.Module.train(self, False)


def _pin_frozen_eval(module: nn.Module) -> None:
    """Pin every maximal subtree without trainable parameters to eval mode."""
    for child in module.children():
        if isinstance(child, Adapter):
            continue
        if any(p.requires_grad for p in child.parameters()):
            _pin_frozen_eval(child)
        else:
            child.train = types.MethodType(_always_eval, child)
            child.eval()


def prepare(model: nn.Module, method: str, **adapter_options) -> nn.Module:
    """Set exactly which parameters train: ``head`` (classifier), ``full`` (all), ``adapter`` (adapters + head).

    ``adapter_options`` go to :func:`add_adapters` (rank, every, scale, init, init_std, start) and are only
    allowed for ``method="adapter"``. A model is prepared once.
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not allowed: choose one of {METHODS}")
    if getattr(model, METHOD_ATTR, None) is not None:
        raise ValueError(f"model was already prepared for method={getattr(model, METHOD_ATTR)!r}; prepare a fresh model")
    if method != "adapter" and adapter_options:
        raise ValueError(f"adapter options {sorted(adapter_options)} only apply to method='adapter', not {method!r}")
    if method != "adapter" and adapter_config(model) is not None:
        raise ValueError(f"model has adapters but method={method!r}; use method='adapter' or a model without adapters")
    head_names = set(head_parameter_names(model))
    if method == "adapter":
        transformer_blocks(model)
        if adapter_config(model) is None:
            add_adapters(model, **adapter_options)
        elif adapter_options:
            raise ValueError(f"model already has adapters ({adapter_config(model)}); drop the adapter options {sorted(adapter_options)}")
    for name, p in model.named_parameters():
        if method == "full":
            p.requires_grad_(True)
        elif method == "head":
            p.requires_grad_(name in head_names)
        else:
            p.requires_grad_(name in head_names or is_adapter_parameter(name))
    if method != "full":
        _pin_frozen_eval(model)
    setattr(model, METHOD_ATTR, method)
    model.train(model.training)
    return model


def prepared_method(model: nn.Module) -> str | None:
    return getattr(model, METHOD_ATTR, None)


def count_parameters(model: nn.Module) -> ParamCount:
    """Trainable and total parameter counts (shared tensors counted once)."""
    seen: set[int] = set()
    trainable = total = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return ParamCount(trainable, total)


def expected_trainable(depth: int, dim: int, num_classes: int, method: str = "adapter", rank: int = 16,
                       every: int = 1, start: int = 0, backbone_params: int | None = None) -> int:
    """PAPER.md's formula: ``ceil((L-start)/every) (2dr + r + d) + (dC + C)`` for adapters; head: ``dC + C``."""
    head = dim * num_classes + num_classes
    if method == "head":
        return head
    if method == "adapter":
        n_adapters = len(range(start, depth, every))
        return n_adapters * Adapter.num_parameters(dim, rank) + head
    if method == "full":
        if backbone_params is None:
            raise ValueError("method='full' needs backbone_params (the backbone's parameter count without head)")
        return backbone_params + head
    raise ValueError(f"method={method!r} is not allowed: choose one of {METHODS}")


__all__ = [
    "METHODS", "ParamCount", "classifier", "count_parameters", "expected_trainable", "head_parameter_names",
    "prepare", "prepared_method", "ADAPTER_ATTR",
]
