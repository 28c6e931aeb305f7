"""Many task adapters on one frozen backbone: one copy of the backbone in memory, a few KB per task.

``MultiTask(backbone, {"pets": "pets.safetensors", ...})`` loads each adapter file (adapters + head + class names)
after checking that it was trained on exactly this backbone (its fingerprint), and serves

- ``forward(images, tasks)``: a mixed batch, one task per image, returning each image's logits for its own task.
  ``mode="batched"`` (default) runs every frozen module once over the whole batch and each task's adapters and
  head on that task's rows only: the cost of one single-task batch. Its logits equal each task's single-task
  model within ``torch.allclose(rtol=BATCHED_RTOL, atol=BATCHED_ATOL)`` and its predictions are the same.
  ``mode="exact"`` runs each task as its own smaller batch through its single-task network: bit-identical (on
  CPU) to the single-task model applied to that task's images, slower with many tasks per batch;
- ``forward_all(images)``: every task's logits for every image. Blocks are shared for as long as the tasks agree:
  the blocks below the first adapted block are computed once per image for all tasks (``start > 0``), then each
  task continues on its own. Each task's logits equal its single-task model applied to the whole batch.

Adding or removing a task touches nothing of the other tasks. Inference only: everything is frozen and in eval
mode. The backbone must be a bare timm ``VisionTransformer`` (ViT, DeiT); its own head is ignored.
"""
from __future__ import annotations

import numbers
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from .adapter import Adapter, AdapterConfig, grouped_residual
from .adapter_files import AdapterFile, backbone_fingerprint, check_fits, open_adapter_file
from .backbones import data_config as backbone_data_config
from .data.transforms import check_data_config
from .inject import adapter_config, embed_dim, transformer_blocks, vit_features, vit_tokens, with_residual
from .regimes import REGIMES, head_parameter_names, prepared_method, regime

TASK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-]*")
# the parts of the input config that change what the network sees; all tasks of one model must agree on them
INPUT_KEYS = ("input_size", "mean", "std")
MODES = ("batched", "exact")  # forward's ways to run a mixed batch; the first is the default
# How far mode="batched" may be from the single-task models (fp32): its frozen products run on the whole batch and
# several tasks' adapters in one batched product, so a BLAS may sum them in another order than the single-task
# model does. Measured on CPU (random-weight mini-s and ViT-S/16, 1-16 tasks, 1-2 threads): no difference at all;
# the scale of fp32 rounding there is ~1e-6 (fp32 vs fp64 logits: 5e-7 on mini-s, 2e-6 on ViT-S/16). The bound
# leaves a margin over that; tests/test_multitask.py holds every mixed batch to it.
BATCHED_RTOL = 1e-5
BATCHED_ATOL = 1e-5
_STAGES = ("patch_embed", "_pos_embed", "patch_drop", "norm_pre", "blocks", "norm", "forward_head")


@dataclass(frozen=True)
class TaskInfo:
    """What one task is: its file, head size, class names, adapters and the input config it was trained with."""

    name: str
    path: Path | None
    method: str
    config: AdapterConfig | None
    num_classes: int
    class_names: list[str] | None
    data_config: dict
    data_config_source: str  # "file" or "backbone" (a file that predates recording it)
    first_block: int  # first adapted block; depth for a head-only task
    nbytes: int  # adapter + head tensor bytes: what this task adds to the model's memory


@dataclass(frozen=True)
class BlockCost:
    """Transformer-block passes per image: what ``forward_all`` computes vs one single-task model per task."""

    shared: int  # blocks computed once per image for all tasks
    per_task: dict[str, int]  # blocks computed for each task on its own
    separate: int  # the same tasks as separate single-task passes

    @property
    def total(self) -> int:
        return self.shared + sum(self.per_task.values())

    @property
    def fraction(self) -> float:
        """``total / separate``: the share of the separate passes' block work that ``forward_all`` does."""
        return self.total / self.separate if self.separate else 0.0


class _TaskModules(nn.Module):
    """The trained tensors of one task: adapters by block index and the classifier head."""

    def __init__(self, adapters: dict[int, Adapter], head: nn.Linear) -> None:
        super().__init__()
        self.adapters = nn.ModuleDict({str(i): a for i, a in sorted(adapters.items())})
        self.head = head


class _GroupRows:
    """The rows of a group of tasks in a task-sorted batch (a slice if contiguous, else an index) and, for a group
    of several tasks, each row's position in the group; computed once per group and forward call."""

    def __init__(self, spans: dict[str, tuple[int, int]], device: torch.device) -> None:
        self.spans, self.device, self.cache = spans, device, {}

    def __call__(self, names: tuple[str, ...]) -> tuple[slice | Tensor, Tensor | None]:
        if names not in self.cache:
            spans = [self.spans[n] for n in names]
            which = None if len(names) == 1 else torch.repeat_interleave(
                torch.arange(len(names)), torch.tensor([hi - lo for lo, hi in spans])).to(self.device)
            if all(spans[k][1] == spans[k + 1][0] for k in range(len(spans) - 1)):
                rows: slice | Tensor = slice(spans[0][0], spans[-1][1])
            else:
                rows = torch.cat([torch.arange(lo, hi) for lo, hi in spans]).to(self.device)
            self.cache[names] = rows, which
        return self.cache[names]


class MultiTask(nn.Module):
    """One frozen backbone, N task adapters with their own heads and class names; see the module docstring."""

    def __init__(self, backbone: nn.Module, tasks: Mapping[str, str | Path] | Iterable[tuple[str, str | Path]] | None = None,
                 class_names: Mapping[str, Sequence[str]] | None = None) -> None:
        super().__init__()
        missing = [s for s in _STAGES if not hasattr(backbone, s)]
        if missing:
            raise ValueError(f"backbone of type {type(backbone).__name__} is not supported: MultiTask needs a timm "
                             f"VisionTransformer (ViT, DeiT); it lacks {missing}")
        if adapter_config(backbone) is not None or prepared_method(backbone) is not None:
            raise ValueError("pass a bare backbone (as create_backbone returns it): this one already has adapters or "
                             f"was prepared for {prepared_method(backbone)!r}; its tasks come from adapter files")
        self.backbone = backbone.requires_grad_(False).eval()
        self.tasks_ = nn.ModuleDict()
        self._info: dict[str, TaskInfo] = {}
        self._fingerprint = backbone_fingerprint(backbone)
        self._depth, self._dim = len(transformer_blocks(backbone)), embed_dim(backbone)
        self._head_names = head_parameter_names(backbone)
        self._backbone_config = check_data_config(backbone_data_config(backbone))
        pairs = list(tasks.items()) if isinstance(tasks, Mapping) else list(tasks or [])
        names = [n for n, _ in pairs]
        doubled = sorted({n for n in names if names.count(n) > 1})
        if doubled:
            raise ValueError(f"duplicate task names {doubled}: every task needs its own name")
        for name, source in pairs:
            self.add_task(name, source, (class_names or {}).get(name))
        self.train(False)  # inference only, from construction on (nn.Module starts in training mode)

    # -- the tasks --------------------------------------------------------------------------------------------------
    @property
    def task_names(self) -> tuple[str, ...]:
        return tuple(self._info)

    def task(self, name: str) -> TaskInfo:
        return self._info[self._check_name(name)]

    @property
    def data_config(self) -> dict:
        """The input config every task shares (the first task's; the backbone's while there is none)."""
        return next(iter(self._info.values())).data_config if self._info else dict(self._backbone_config)

    def add_task(self, name: str, source: str | Path | AdapterFile, class_names: Sequence[str] | None = None) -> TaskInfo:
        """Load one adapter file as task ``name``; checked completely before the model changes.

        ``class_names`` replaces (or supplies, for a file without one) the file's class-name table.
        """
        if not isinstance(name, str) or not TASK_NAME.fullmatch(name) or (hasattr(self.tasks_, name) and name not in self.tasks_):
            raise ValueError(f"task name {name!r} is not allowed: use letters, digits, '_' and '-' (not starting with "
                             "'_' or '-'), and not a name nn.ModuleDict reserves (keys, items, values, ...)")
        if name in self._info:
            raise ValueError(f"duplicate task name {name!r}: this model already has tasks {list(self._info)}; "
                             "remove it first or choose another name")
        file = source if isinstance(source, AdapterFile) else open_adapter_file(source)
        if not regime(file.method).multitask:
            raise ValueError(f"task {name!r}: {file.path} is a {regime(file.method).label} file ({file.method!r}), which "
                             "changes the backbone's own layers, so it cannot share one frozen backbone with other "
                             f"tasks; load it alone with load_adapters (MultiTask serves {list(_served())})")
        file.check_backbone(self._fingerprint)
        check_fits(self.backbone, file, any_head_size=True)
        names = list(class_names) if class_names is not None else file.class_names
        if names is not None and len(names) != file.num_classes:
            raise ValueError(f"task {name!r}: {len(names)} class names for a head with {file.num_classes} outputs")
        config, source_kind = (file.data_config, "file") if file.data_config is not None else (self._backbone_config, "backbone")
        self._check_inputs(name, file.path, config)
        modules = self._build(file)
        ref = next(self.backbone.parameters())
        modules.to(device=ref.device, dtype=ref.dtype)
        first = file.config.adapted_blocks(self._depth)[0] if file.config is not None else self._depth
        nbytes = sum(p.numel() * p.element_size() for p in modules.parameters())
        info = TaskInfo(name, file.path, file.method, file.config, file.num_classes, names, config, source_kind, first, nbytes)
        self.tasks_[name] = modules
        self._info[name] = info
        return info

    def remove_task(self, name: str) -> None:
        self._check_name(name)
        del self.tasks_[name]
        del self._info[name]

    def _check_name(self, name: str) -> str:
        if name not in self._info:
            raise ValueError(f"unknown task {name!r}: this model has tasks {list(self._info)}")
        return name

    def _check_inputs(self, name: str, path: Path, config: dict) -> None:
        """Every task sees the same input tensor: input size and normalisation must match the backbone and each other."""
        for key in INPUT_KEYS:
            if config[key] != self._backbone_config[key]:
                raise ValueError(f"task {name!r} ({path}) was trained with {key}={config[key]} but the backbone takes "
                                 f"{key}={self._backbone_config[key]}")
        for other in self._info.values():
            if other.data_config != config:
                diff = {k: (config[k], other.data_config[k]) for k in config if config[k] != other.data_config.get(k)}
                raise ValueError(f"task {name!r} ({path}) was trained with another input config than task "
                                 f"{other.name!r}: {diff} (this task vs that one); one model serves one input config")

    def _build(self, file: AdapterFile) -> _TaskModules:
        cfg, prefix = file.config, self._blocks_prefix()
        adapters: dict[int, Adapter] = {}
        for i in (cfg.adapted_blocks(self._depth) if cfg is not None else []):
            adapter = cfg.build(self._dim)
            adapter.load_state_dict({k.removeprefix(f"{prefix}.{i}.adapter."): v for k, v in file.tensors.items()
                                     if k.startswith(f"{prefix}.{i}.adapter.")}, strict=True)
            adapters[i] = adapter
        head = nn.Linear(self._dim, file.num_classes)
        head.load_state_dict({name.rsplit(".", 1)[1]: file.tensors[name] for name in self._head_names}, strict=True)
        return _TaskModules(adapters, head).requires_grad_(False).eval()

    def _blocks_prefix(self) -> str:
        blocks = transformer_blocks(self.backbone)
        return next(n for n, m in self.backbone.named_modules() if m is blocks)

    # -- inference only -----------------------------------------------------------------------------------------------
    def train(self, mode: bool = True) -> MultiTask:
        """Always eval: the model is for inference (dropout off, norms frozen), whatever ``mode`` says."""
        return super().train(False)

    def task_index(self, tasks: str | int | Sequence[str | int] | Tensor, batch: int) -> Tensor:
        """One task index per image, from a name or index (all images) or one per image; unknown ones are an error."""
        names = list(self._info)
        if not names:
            raise ValueError("this MultiTask has no tasks: add one with add_task(name, adapter_file)")

        def one(t: str | int) -> int:
            if isinstance(t, str):
                if t not in self._info:
                    raise ValueError(f"unknown task {t!r}: this model has tasks {names} (or indices 0..{len(names) - 1})")
                return names.index(t)
            if isinstance(t, bool) or not isinstance(t, numbers.Integral) or not 0 <= t < len(names):
                raise ValueError(f"unknown task index {t!r}: use 0..{len(names) - 1} or a name from {names}")
            return int(t)

        if isinstance(tasks, Tensor):
            if tasks.ndim != 1 or tasks.dtype.is_floating_point or tasks.dtype == torch.bool:
                raise ValueError(f"tasks as a tensor must be 1-D integer indices, got {tasks.dtype} {tuple(tasks.shape)}")
            tasks = tasks.tolist()
        if isinstance(tasks, (str, numbers.Integral)):
            return torch.full((batch,), one(tasks), dtype=torch.long)
        tasks = list(tasks)
        if len(tasks) != batch:
            raise ValueError(f"got {len(tasks)} task labels for {batch} images: give one per image (or one for all)")
        return torch.tensor([one(t) for t in tasks], dtype=torch.long)

    def _check_images(self, images: Tensor) -> None:
        want = tuple(self.data_config["input_size"])
        if not isinstance(images, Tensor) or images.ndim != 4 or tuple(images.shape[1:]) != want:
            shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise ValueError(f"images of shape {shape} do not match the tasks' input size: expected (B, {', '.join(map(str, want))})")

    def forward(self, images: Tensor, tasks: str | int | Sequence[str | int] | Tensor,
                mode: str = "batched") -> list[Tensor]:
        """A mixed batch: ``tasks`` names (or indexes) each image's task; returns each image's logits for its task.

        Heads may differ in size, so the result is one logits vector per image, in the order of ``images``.
        ``mode="batched"`` (default) runs every frozen module once over the whole batch and each task's adapters
        and head on its own rows; its logits equal the single-task models' within ``BATCHED_RTOL``/``BATCHED_ATOL``
        (fp32) and their predictions match. ``mode="exact"`` runs each task as its own smaller batch through its
        single-task network: bit-identical on CPU to the single-task model on that task's images, but slower
        with many tasks in a batch.
        """
        if mode not in MODES:
            raise ValueError(f"mode={mode!r} is not allowed: choose one of {MODES}")
        self._check_images(images)
        index = self.task_index(tasks, images.shape[0])
        return self._batched(images, index) if mode == "batched" else self._exact(images, index)

    def _exact(self, images: Tensor, index: Tensor) -> list[Tensor]:
        """Each task on its own rows (``index_select``) through its single-task network."""
        out: list[Tensor | None] = [None] * images.shape[0]
        for k, name in enumerate(self._info):
            rows = torch.nonzero(index == k).flatten()
            if rows.numel() == 0:
                continue
            logits = self._run(images.index_select(0, rows.to(images.device)), [name])[name]
            for row, value in zip(rows.tolist(), logits.unbind(0)):
                out[row] = value
        return out  # type: ignore[return-value]

    def _batched(self, images: Tensor, index: Tensor) -> list[Tensor]:
        """One pass of the frozen network over the whole batch; each task's adapters and head on its rows only.

        The batch is reordered once so that each task's rows form one contiguous slice. After each block, the tasks
        adapted there add their residual to their rows in place (``h + A(h)``, as ``inject``'s hook adds it): a
        task alone with its rank through its own ``Adapter``, several tasks of one rank in one batched product
        (``grouped_residual``), so the op count per block does not grow with the number of tasks. The backbone
        carries no adapters or hooks (checked on construction): its blocks compute the frozen part only.
        """
        order = torch.argsort(index, stable=True)
        if not torch.equal(order, torch.arange(len(order))):
            images = images.index_select(0, order.to(images.device))
        spans: dict[str, tuple[int, int]] = {}
        lo = 0
        for name, count in zip(self._info, torch.bincount(index, minlength=len(self._info)).tolist()):
            if count:
                spans[name] = (lo, lo + count)
            lo += count
        rows_of = _GroupRows(spans, images.device)
        b = self.backbone
        x = vit_tokens(b, images)
        for i, block in enumerate(transformer_blocks(b)):
            x = block(x)
            by_rank: dict[int, list[str]] = {}
            for name in spans:
                if str(i) in self.tasks_[name].adapters:
                    by_rank.setdefault(self.tasks_[name].adapters[str(i)].rank, []).append(name)
            for names in by_rank.values():
                adapters = [self.tasks_[n].adapters[str(i)] for n in names]
                rows, which = rows_of(tuple(names))
                part = x[rows] if isinstance(rows, slice) else x.index_select(0, rows)
                delta = adapters[0](part) if len(adapters) == 1 else grouped_residual(adapters, part, which)
                if isinstance(rows, slice):
                    part.add_(delta)
                else:
                    x.index_add_(0, rows, delta.to(x.dtype))  # under autocast the residual may be narrower
        features = vit_features(b, x)
        out: list[Tensor | None] = [None] * len(order)
        positions = order.tolist()
        for name, (lo, hi) in spans.items():
            for row, value in zip(positions[lo:hi], self.tasks_[name].head(features[lo:hi]).unbind(0)):
                out[row] = value
        return out  # type: ignore[return-value]

    def forward_all(self, images: Tensor, tasks: Sequence[str] | None = None) -> dict[str, Tensor]:
        """Every task's (or the named tasks') logits for every image: ``{task: (B, C_task)}``.

        Shared blocks run once for all tasks; each task's logits equal its single-task model on ``images``.
        """
        self._check_images(images)
        names = list(self._info) if tasks is None else [self._check_name(t) for t in tasks]
        if not names:
            raise ValueError("this MultiTask has no tasks: add one with add_task(name, adapter_file)")
        return self._run(images, names)

    def _run(self, images: Tensor, names: list[str]) -> dict[str, Tensor]:
        """The network of every task in ``names`` on ``images``, one shared stream until each task's first adapter.

        The adapter residual is added to a block's output exactly as ``inject``'s forward hook adds it.
        """
        b = self.backbone
        first = {n: self._info[n].first_block for n in names}
        adapters = {n: self.tasks_[n].adapters for n in names}
        x = vit_tokens(b, images)
        plain: Tensor | None = x
        streams: dict[str, Tensor] = {}
        for i, block in enumerate(transformer_blocks(b)):
            out = block(plain) if any(f >= i for f in first.values()) else None
            for name in names:
                if first[name] < i:
                    y = block(streams[name])
                elif first[name] == i:
                    y = out
                else:
                    continue
                adapter = adapters[name][str(i)] if str(i) in adapters[name] else None
                streams[name] = y if adapter is None else with_residual(adapter, y)
            plain = out
        pooled: dict[int, Tensor] = {}
        logits = {}
        for name in names:
            stream = streams.get(name, plain)  # head-only tasks end on the plain stream and share its features
            if id(stream) not in pooled:
                pooled[id(stream)] = vit_features(b, stream)
            logits[name] = self.tasks_[name].head(pooled[id(stream)])
        return logits

    def cost(self, tasks: Sequence[str] | None = None) -> BlockCost:
        """Block passes per image of ``forward_all`` (shared + per task) against one single-task pass per task."""
        names = list(self._info) if tasks is None else [self._check_name(t) for t in tasks]
        firsts = [self._info[n].first_block for n in names]
        shared = min(self._depth, max(firsts) + 1) if firsts else 0
        per_task = {n: self._depth - 1 - self._info[n].first_block if self._info[n].first_block < self._depth else 0
                    for n in names}
        return BlockCost(shared=shared, per_task=per_task, separate=self._depth * len(names))

    def extra_repr(self) -> str:
        tasks = ", ".join(f"{n}: {i.num_classes} classes, {i.config.rank if i.config else 0}-rank from block {i.first_block}"
                          for n, i in self._info.items())
        return f"tasks=[{tasks}]"


__all__ = ["BATCHED_ATOL", "BATCHED_RTOL", "MODES", "BlockCost", "MultiTask", "TaskInfo"]


def _served() -> tuple[str, ...]:
    """The regimes whose files MultiTask can serve (their records say so)."""
    return tuple(n for n, r in REGIMES.items() if r.multitask)
