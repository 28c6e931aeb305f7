"""The training regimes as registered records (:class:`Regime`), and ``prepare``, which sets what each one trains.

A regime is one record in :data:`REGIMES`: its name and label, its colour in figures, what trains, the exact
trainable-parameter formula, its learning-rate grid per profile, what its file stores and whether
:class:`~adaptertune.MultiTask` can serve it. Every module that needs to know something about a regime asks the
record; adding one is :func:`register` plus its ``apply`` function (docs/architecture.md).

Frozen modules are pinned to eval mode, even under ``model.train()``: a frozen backbone must compute the
same function it was pretrained to compute, so its dropout/drop-path stay off and any norm running
statistics never drift. Parameter-free modules outside the adapters (e.g. ``pos_drop``, ``head_drop``)
count as frozen too. Full fine-tuning changes nothing: every module follows ``model.train()``.
"""
from __future__ import annotations

import copy
import types
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, NamedTuple

from torch import nn

from . import lora
from .adapter import Adapter, AdapterConfig
from .inject import ADAPTER_ATTR, add_adapters, adapter_config, embed_dim, is_adapter_parameter, transformer_blocks

METHOD_ATTR = "adaptertune_method"
OPTIONS_ATTR = "adaptertune_regime_options"


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


class Shape(NamedTuple):
    """What a trainable-parameter formula needs to know about a backbone and a task."""

    depth: int
    dim: int
    num_classes: int
    hidden: int  # the MLP's hidden width
    backbone_params: int | None = None  # without the head (full fine-tuning's count)


def head_count(shape: Shape) -> int:
    return shape.dim * shape.num_classes + shape.num_classes


@dataclass(frozen=True)
class Regime:
    """One training regime: everything the library, the store, training and the paper floor know about it."""

    name: str
    label: str  # in tables and figures
    colour: str  # in figures
    trains: str  # what trains, in words (Tab.1)
    formula: str  # the trainable-parameter formula, in words (Tab.1); ``trainable`` computes it
    apply: Callable[[nn.Module, dict[str, Any]], dict[str, Any]]  # add modules + set requires_grad; -> options used
    trainable: Callable[[Shape, dict[str, Any]], int]
    lr_grid: Mapping[str, tuple[float, ...]]  # per profile: the tuned protocol's candidate rates
    whole_model: bool = False  # its file is the whole state dict (else: trained tensors + metadata, an adapter file)
    multitask: bool = False  # MultiTask can serve its files (adapters and heads on one shared frozen backbone)
    adapter_options: bool = False  # takes AdapterConfig's fields (rank, every, ...), which enter the run id
    probe: bool = False  # trains the head alone, so frozen features can be cached (head_mode='cached_features')
    recompute: bool = False  # frozen MLPs between trained modules may be recomputed in backward
    in_paper: bool = True  # one of the paper's regimes (the paper-recipe grids); else beyond the paper (tuned only)
    speed_like: str | None = None  # plan with this regime's throughput prior until runs of its own are measured
    option_names: tuple[str, ...] = ()  # options ``prepare`` accepts besides the adapter's
    added: Callable[[str], bool] = field(default=lambda name: False)  # a tensor name this regime adds to the backbone
    # name -> shape of what its file holds besides the head, from the backbone and the file's options; the default
    # prepares a copy of the backbone and reads what trains (right for any regime that only chooses what trains)
    file_shapes: Callable[[nn.Module, dict[str, Any]], dict[str, tuple[int, ...]]] | None = None

    def shapes_in_file(self, model: nn.Module, options: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        """What a file of this regime holds besides the head, on ``model``'s backbone."""
        if self.file_shapes is not None:
            return self.file_shapes(model, options)
        probe = copy.deepcopy(model)
        heads = set(head_parameter_names(probe))
        self.apply(probe, dict(options))
        return {n: tuple(p.shape) for n, p in probe.named_parameters() if p.requires_grad and n not in heads}

    def expected(self, shape: Shape, **options: Any) -> int:
        return self.trainable(shape, options)


REGIMES: dict[str, Regime] = {}


def register(regime: Regime) -> Regime:
    """Add a regime to the registry (a name is registered once)."""
    if not isinstance(regime, Regime):
        raise ValueError(f"register needs a Regime record, got {type(regime).__name__}")
    if regime.name in REGIMES:
        raise ValueError(f"regime {regime.name!r} is already registered: choose another name")
    REGIMES[regime.name] = regime
    return regime


def unregister(name: str) -> None:
    """Remove a regime (tests register toy regimes and remove them again)."""
    REGIMES.pop(regime(name).name)


def regime(name: str) -> Regime:
    """The record of a regime; an unknown name is a ValueError listing the registered ones."""
    if name not in REGIMES:
        raise ValueError(f"method={name!r} is not allowed: choose one of {methods()}")
    return REGIMES[name]


def methods(in_paper: bool | None = None) -> tuple[str, ...]:
    """Registered regime names in table order; ``in_paper`` keeps only the paper's (True) or only the others."""
    return tuple(n for n, r in REGIMES.items() if in_paper is None or r.in_paper == in_paper)


def file_methods() -> tuple[str, ...]:
    """The regimes whose trained part is an adapter file (``predict`` and ``MultiTask`` serve it on a shared frozen
    backbone): every registered one but the whole-model regimes such as full fine-tuning."""
    return tuple(n for n, r in REGIMES.items() if not r.whole_model)


def _apply_head(model: nn.Module, options: dict[str, Any]) -> dict[str, Any]:
    heads = set(head_parameter_names(model))
    for name, p in model.named_parameters():
        p.requires_grad_(name in heads)
    return {}


def _apply_full(model: nn.Module, options: dict[str, Any]) -> dict[str, Any]:
    model.requires_grad_(True)
    return {}


def _apply_adapter(model: nn.Module, options: dict[str, Any]) -> dict[str, Any]:
    transformer_blocks(model)
    if adapter_config(model) is None:
        add_adapters(model, **options)
    elif options:
        raise ValueError(f"model already has adapters ({adapter_config(model)}); drop the adapter options "
                         f"{sorted(options)}")
    heads = set(head_parameter_names(model))
    for name, p in model.named_parameters():
        p.requires_grad_(name in heads or is_adapter_parameter(name))
    return {}


def _apply_lora(model: nn.Module, options: dict[str, Any]) -> dict[str, Any]:
    _apply_head(model, {})
    return lora.add_lora(model, **options)


def _apply_bitfit(model: nn.Module, options: dict[str, Any]) -> dict[str, Any]:
    heads = set(head_parameter_names(model))
    for name, p in model.named_parameters():
        p.requires_grad_(name in heads or name.endswith(".bias"))
    return {}


def _adapter_shapes(model: nn.Module, options: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    cfg, dim, blocks = AdapterConfig(**options), embed_dim(model), transformer_blocks(model)
    prefix = next(n for n, m in model.named_modules() if m is blocks)
    shapes: dict[str, tuple[int, ...]] = {}
    for i in cfg.adapted_blocks(len(blocks)):
        p = f"{prefix}.{i}.{ADAPTER_ATTR}"
        shapes |= {f"{p}.down.weight": (cfg.rank, dim), f"{p}.down.bias": (cfg.rank,),
                   f"{p}.up.weight": (dim, cfg.rank), f"{p}.up.bias": (dim,)}
    return shapes


def _bias_shapes(model: nn.Module, options: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    heads = set(head_parameter_names(model))
    return {lora.backbone_tensor_name(n): tuple(p.shape) for n, p in model.named_parameters()
            if n.endswith(".bias") and n not in heads and not is_added_parameter(n)}


def _adapter_count(shape: Shape, options: dict[str, Any]) -> int:
    rank, every, start = options.get("rank", 16), options.get("every", 1), options.get("start", 0)
    return len(range(start, shape.depth, every)) * Adapter.num_parameters(shape.dim, rank) + head_count(shape)


def _full_count(shape: Shape, options: dict[str, Any]) -> int:
    if shape.backbone_params is None:
        raise ValueError("method='full' needs backbone_params (the backbone's parameter count without head)")
    return shape.backbone_params + head_count(shape)


def _lora_count(shape: Shape, options: dict[str, Any]) -> int:
    ranks = lora.matched_ranks(shape.dim, shape.hidden) | options
    return shape.depth * lora.block_parameters(shape.dim, shape.hidden, ranks["qkv_rank"], ranks["mlp_rank"]) \
        + head_count(shape)


def _bitfit_count(shape: Shape, options: dict[str, Any]) -> int:
    # per block: norm1 d, qkv 3d, proj d, norm2 d, fc1 h, fc2 d; outside: patch embedding d, final norm d
    return shape.depth * (7 * shape.dim + shape.hidden) + 2 * shape.dim + head_count(shape)


register(Regime(
    "head", "Head-only", "#8c8c8c", "the classifier head", "d·C + C", _apply_head, lambda s, o: head_count(s),
    lr_grid={"paper": (1e-3, 3e-3, 1e-2, 3e-2), "mini": (1e-2, 3e-2, 1e-1, 3e-1, 1.0), "smoke": (1e-3, 1e-2)},
    multitask=True, probe=True, file_shapes=lambda model, options: {}))
register(Regime(
    "adapter", "AdapterTune", "#d1495b", "adapters + head", "⌈(L − start)/every⌉ (2dr + r + d) + d·C + C",
    _apply_adapter, _adapter_count,
    lr_grid={"paper": (3e-4, 1e-3, 3e-3, 1e-2), "mini": (3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1),
             "smoke": (1e-3, 1e-2)},
    multitask=True, adapter_options=True, recompute=True, added=is_adapter_parameter, file_shapes=_adapter_shapes))
register(Regime(
    "full", "Full FT", "#00798c", "every parameter", "backbone + d·C + C", _apply_full, _full_count,
    lr_grid={"paper": (1e-5, 3e-5, 1e-4, 3e-4), "mini": (3e-4, 1e-3, 3e-3, 1e-2), "smoke": (1e-4, 1e-3)},
    whole_model=True))
register(Regime(
    "lora", "LoRA", "#edae49", "LoRA on qkv, fc1, fc2 (peft) + head, at AdapterTune r=16's budget",
    "L (4d·a + 2(d + h)·b) + d·C + C (a, b: matched ranks)", _apply_lora, _lora_count,
    lr_grid={"paper": (3e-4, 1e-3, 3e-3, 1e-2), "mini": (3e-3, 1e-2, 3e-2, 1e-1), "smoke": (1e-3, 1e-2)},
    in_paper=False, speed_like="adapter", option_names=lora.OPTION_NAMES, added=lora.is_lora_parameter,
    file_shapes=lambda model, options: lora.lora_shapes(model, **options)))
register(Regime(
    "bitfit", "BitFit", "#66a182", "every bias + head", "L (7d + h) + 2d + d·C + C", _apply_bitfit, _bitfit_count,
    lr_grid={"paper": (3e-4, 1e-3, 3e-3, 1e-2), "mini": (3e-3, 1e-2, 3e-2, 1e-1, 3e-1), "smoke": (1e-3, 1e-2)},
    in_paper=False, speed_like="adapter", file_shapes=_bias_shapes))


def is_added_parameter(name: str) -> bool:
    """A tensor some regime adds to the backbone (adapters, LoRA factors): never part of the frozen backbone."""
    return any(r.added(name) for r in REGIMES.values())


def trained_names(model: nn.Module, method: str) -> set[str]:
    """The parameter names a regime trains on this (prepared) model."""
    regime(method)
    return {n for n, p in model.named_parameters() if p.requires_grad}


def prepare(model: nn.Module, method: str, **options: Any) -> nn.Module:
    """Set exactly which parameters train, as the regime's record says (``head``, ``adapter``, ``full``, ``lora``,
    ``bitfit``, or any registered one).

    ``options`` go to the regime (the adapter's rank, every, scale, init, init_std, start; LoRA's qkv_rank, mlp_rank)
    and are refused for a regime that takes none. A model is prepared once.
    """
    r = regime(method)
    if getattr(model, METHOD_ATTR, None) is not None:
        raise ValueError(f"model was already prepared for method={getattr(model, METHOD_ATTR)!r}; prepare a fresh "
                         "model")
    allowed = set(AdapterConfig.field_names()) if r.adapter_options else set(r.option_names)
    if set(options) - allowed:
        raise ValueError(f"options {sorted(set(options) - allowed)} do not apply to method={method!r}"
                         + (f": it takes {sorted(allowed)}" if allowed else ": it takes none"))
    if not r.adapter_options and adapter_config(model) is not None:
        raise ValueError(f"model has adapters but method={method!r}; use method='adapter' or a model without adapters")
    head_parameter_names(model)  # a model without a trainable head is refused before anything changes
    used = r.apply(model, dict(options))
    if not all(p.requires_grad for p in model.parameters()):
        _pin_frozen_eval(model)
    setattr(model, METHOD_ATTR, method)
    setattr(model, OPTIONS_ATTR, dict(used))
    model.train(model.training)
    return model


def prepared_method(model: nn.Module) -> str | None:
    return getattr(model, METHOD_ATTR, None)


def regime_options(model: nn.Module) -> dict[str, Any]:
    """The options a regime chose when the model was prepared (LoRA's ranks); adapters keep theirs on the model."""
    return dict(getattr(model, OPTIONS_ATTR, None) or {})


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


def model_shape(model: nn.Module, num_classes: int | None = None) -> Shape:
    """A backbone's :class:`Shape` (its head's classes unless ``num_classes``)."""
    heads = set(head_parameter_names(model))
    backbone = sum(p.numel() for n, p in model.named_parameters() if n not in heads and not is_added_parameter(n))
    outputs = int(classifier(model).weight.shape[0]) if num_classes is None else num_classes
    return Shape(len(transformer_blocks(model)), embed_dim(model), outputs, lora.mlp_hidden(model), backbone)


def expected_trainable(depth: int, dim: int, num_classes: int, method: str = "adapter", rank: int = 16,
                       every: int = 1, start: int = 0, backbone_params: int | None = None,
                       hidden: int | None = None, **options: Any) -> int:
    """The regime's exact formula (``Regime.formula``); PAPER.md's for adapters: ``ceil((L-start)/every) (2dr + r + d)
    + (dC + C)``; head: ``dC + C``. ``hidden`` (the MLP width) defaults to timm's 4d."""
    r = regime(method)
    if r.adapter_options:
        options |= {"rank": rank, "every": every, "start": start}
    return r.expected(Shape(depth, dim, num_classes, hidden or 4 * dim, backbone_params), **options)


__all__ = [
    "REGIMES", "ParamCount", "Regime", "Shape", "classifier", "count_parameters", "expected_trainable",
    "head_parameter_names", "is_added_parameter", "methods", "model_shape", "prepare", "prepared_method", "regime",
    "regime_options", "register", "trained_names", "unregister", "ADAPTER_ATTR",
]
