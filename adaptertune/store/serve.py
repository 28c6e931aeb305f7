"""Serving adapter files and stored runs together: what ``python -m adaptertune predict`` does, as functions.

Task specs are ``[NAME=]FILE`` or ``[NAME=]RUN_ID``; the backbone they share is a run's own (rebuilt exactly as it was
trained) when any spec is a run id, else the one the first file names. The command line only parses and prints.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from ..adapter_files import open_adapter_file
from ..backbones import create_backbone
from ..multitask import MultiTask
from . import runs
from .models import backbone_for_run

RUN_ID = re.compile(r"[0-9a-f]{12}")


@dataclass(frozen=True)
class TaskSpec:
    """One task to serve: its name, its adapter file and the run it came from (None for a loose file)."""

    name: str
    path: Path
    run_id: str | None = None


def task_specs(specs: list[str], root: str | Path | None = None) -> list[TaskSpec]:
    """``[NAME=]FILE`` or ``[NAME=]RUN_ID`` -> task specs; default names: the run's dataset (run ids), the file's stem,
    or its run folder for a store's adapter file. Duplicate names are refused with the fix."""
    out = []
    for spec in specs:
        name, ref = spec.split("=", 1) if "=" in spec and not Path(spec).exists() else (None, spec)
        if Path(ref).is_file():
            path = Path(ref)
            default = path.parent.name if path.name == runs.ADAPTER_FILE else path.stem
            out.append(TaskSpec(name or default, path))
        elif RUN_ID.fullmatch(ref):
            path = runs.adapter_file_for_run(ref, root)
            out.append(TaskSpec(name or Path(runs.load_config(ref, root).dataset).name, path, ref))
        else:
            raise ValueError(f"adapter {ref!r} is neither an adapter file nor a run id (12 hex digits) of the store "
                             f"{runs.store_root(root)}")
    names = [s.name for s in out]
    doubled = sorted({n for n in names if names.count(n) > 1})
    if doubled:
        raise ValueError(f"duplicate task names {doubled}: name each adapter, e.g. "
                         f"{doubled[0]}_a=ADAPTER {doubled[0]}_b=ADAPTER")
    return out


def class_name_overrides(values: list[str], tasks: list[str]) -> dict[str, list[str]]:
    """``[TASK=]FILE`` (one class name per line) -> {task: names}; a bare FILE only when there is one task."""
    out = {}
    for value in values:
        task, file = value.split("=", 1) if "=" in value and not Path(value).exists() else (None, value)
        if task is None:
            if len(tasks) != 1:
                raise ValueError(f"--class-names {value}: say which task it is for (TASK=FILE; tasks {tasks})")
            task = tasks[0]
        if task not in tasks:
            raise ValueError(f"--class-names {value}: unknown task {task!r}; tasks are {tasks}")
        out[task] = [line.strip() for line in Path(file).read_text().splitlines() if line.strip()]
    return out


def shared_backbone(specs: list[TaskSpec], root: str | Path | None = None, backbone: str | None = None,
                    checkpoint: str | None = None, profile: str = "mini") -> tuple[nn.Module, str]:
    """The backbone every task shares and where it came from, in words: a run's own (rebuilt as trained) if any spec
    is a run id and no ``backbone`` is given, else ``backbone`` or the one the first file names, created with the
    pretrained weights of ``profile`` (or ``checkpoint``)."""
    run_ids = [s.run_id for s in specs if s.run_id is not None]
    if run_ids and not backbone:
        cfg = runs.load_config(run_ids[0], root)
        return backbone_for_run(run_ids[0], root), f"{cfg.backbone} as run {run_ids[0]} trained it ({cfg.profile})"
    first = open_adapter_file(specs[0].path)
    name = backbone or first.backbone
    return (create_backbone(name, first.num_classes, checkpoint=checkpoint, profile=profile),
            f"{name} ({'checkpoint ' + checkpoint if checkpoint else 'profile ' + profile + ' weights'})")


def serve(specs: list[str], root: str | Path | None = None, class_names: list[str] = (), backbone: str | None = None,
          checkpoint: str | None = None, profile: str = "mini") -> tuple[MultiTask, str]:
    """One :class:`MultiTask` serving every spec, and where its backbone came from; a backbone mismatch says how to
    pick the right one."""
    tasks = task_specs(specs, root)
    overrides = class_name_overrides(list(class_names), [s.name for s in tasks])
    shared, where = shared_backbone(tasks, root, backbone, checkpoint, profile)
    try:
        return MultiTask(shared, [(s.name, s.path) for s in tasks], class_names=overrides), where
    except ValueError as err:
        if "another backbone" not in str(err):
            raise
        raise ValueError(f"{err}\n  (the backbone was {where}; for a file from the run store pass its run id, for a "
                         "mini backbone check --profile, or pass the right --backbone / --checkpoint)") from None


__all__ = ["TaskSpec", "class_name_overrides", "serve", "shared_backbone", "task_specs"]
