"""Predictions from adapter files on image files: the eval transform the adapters were trained with, batching,
top-k, and a report of the images that could not be decoded (skipped, never guessed).

Images come as files, a folder of files, or an ImageFolder tree (``<root>/<class>/<image>``); in a tree the folder
names are the true labels, matched to each task's class names, so :func:`score` can report accuracy and the
most common confusions. ``python -m adaptertune predict`` is the command-line front end.
"""
from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS, default_loader, find_classes, make_dataset
from tqdm.auto import tqdm

from .atomic import atomic_write_bytes
from .data.transforms import check_data_config, paper_transforms
from .multitask import MultiTask


@dataclass(frozen=True)
class ImageItem:
    """One image to predict; ``label`` is its class folder's name in an ImageFolder tree, else None."""

    path: Path
    label: str | None = None


@dataclass
class Predictions:
    """One row per (task, decoded image), and the images that were skipped with the reason."""

    rows: list[dict] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    tasks: tuple[str, ...] = ()
    top_k: int = 5


@dataclass(frozen=True)
class TaskScore:
    """Accuracy of one task on the labelled images whose folder name is one of its classes."""

    task: str
    labelled: int  # decoded images with a folder label
    scored: int  # of those, labels that name one of the task's classes
    correct: int
    unknown_labels: tuple[str, ...]  # folder names that are none of the task's classes
    per_class: list[dict]  # class, n, correct, accuracy, top_confusion, confusion_n

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.scored if self.scored else None


def eval_transform(data_config: dict) -> Callable[[Image.Image], Tensor]:
    """The evaluation transform of file-backed datasets for this input config: resize to ``H / crop_pct``, centre
    crop, to tensor, normalise (grayscale or RGB as the input size says). On images already at the input size
    it is bit-identical to the in-memory mini datasets' preparation."""
    return paper_transforms(check_data_config(data_config))[1]


def find_images(sources: Sequence[str | Path]) -> list[ImageItem]:
    """Image files from files, folders of files and ImageFolder trees, in a stable order.

    A folder with images at its top level gives those images (unlabelled); a folder whose images sit in class
    subfolders is an ImageFolder tree (labelled by folder name). A folder with both is ambiguous and refused.
    Files given by name are taken whatever their extension (an undecodable one is reported when read).
    """
    if isinstance(sources, (str, Path)):
        sources = [sources]
    items: list[ImageItem] = []
    for source in sources:
        path = Path(source).expanduser()
        if path.is_file():
            items.append(ImageItem(path))
        elif path.is_dir():
            items += _folder(path)
        else:
            raise ValueError(f"image source {path} does not exist: pass image files, a folder or an ImageFolder tree")
    if not items:
        raise ValueError(f"no images found in {[str(s) for s in sources]} (looked for {', '.join(IMG_EXTENSIONS)})")
    return items


def _folder(path: Path) -> list[ImageItem]:
    top = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS)
    try:
        classes, class_to_idx = find_classes(str(path))
    except FileNotFoundError:
        classes, class_to_idx = [], {}
    tree = make_dataset(str(path), class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=True) if classes else []
    if top and tree:
        raise ValueError(f"{path} holds images at its top level and in subfolders {classes[:5]}: pass the files, or "
                         "a folder whose images all sit in class subfolders (an ImageFolder tree)")
    if tree:
        return [ImageItem(Path(p), classes[label]) for p, label in tree]
    return [ImageItem(p) for p in top]


# PIL names the open file object (``<_io.BufferedReader name='x.png'>``); the caller prints the path itself
_FILE_REPR = re.compile(r"\s*<_io\.\w+ name=[^>]*>")


class _ImageFiles(Dataset):
    """Decodes and transforms one image per item; a failure is returned as its reason, not raised."""

    def __init__(self, items: list[ImageItem], transform: Callable[[Image.Image], Tensor]) -> None:
        self.items, self.transform = items, transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[int, Tensor | None, str | None]:
        try:
            return index, self.transform(default_loader(str(self.items[index].path))), None
        except Exception as err:  # PIL raises several types for unreadable, truncated or non-image files
            return index, None, f"{type(err).__name__}: {_FILE_REPR.sub('', str(err)).strip()}"


def _collate(batch: list[tuple[int, Tensor | None, str | None]]) -> tuple[list[int], Tensor | None, list[tuple[int, str]]]:
    good = [(i, x) for i, x, _ in batch if x is not None]
    failed = [(i, reason) for i, x, reason in batch if x is None]
    return [i for i, _ in good], (torch.stack([x for _, x in good]) if good else None), failed


def required_class_names(model: MultiTask, tasks: Sequence[str]) -> dict[str, list[str]]:
    """Each task's class names; a task without a class-name table is one error naming it and the fix."""
    out = {}
    for name in tasks:
        info = model.task(name)
        if info.class_names is None:
            raise ValueError(f"task {name!r} ({info.path}) has no class-name table: pass its class names "
                             f"(`--class-names {name}=FILE`, one name per line, {info.num_classes} lines) or retrain")
        out[name] = list(info.class_names)
    return out


def predict(model: MultiTask, items: Sequence[ImageItem], *, tasks: Sequence[str] | None = None, batch_size: int = 64,
            top_k: int = 5, num_workers: int = 0, progress: bool = False) -> Predictions:
    """Top-k predictions of every task (or the named ones) for every image; undecodable images are skipped.

    Each batch goes through :meth:`MultiTask.forward_all`, so shared blocks run once per image for all tasks.
    """
    names = list(model.task_names) if tasks is None else list(tasks)
    if not names:
        raise ValueError("no tasks to predict with: load at least one adapter file")
    for key, value in (("batch_size", batch_size), ("top_k", top_k)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{key}={value!r} is not allowed: use an integer >= 1")
    classes = required_class_names(model, names)
    device = next(model.parameters()).device
    loader = DataLoader(_ImageFiles(list(items), eval_transform(model.data_config)), batch_size=batch_size,
                        shuffle=False, num_workers=num_workers, collate_fn=_collate)
    result = Predictions(tasks=tuple(names), top_k=top_k)
    model.eval()
    for indices, x, failed in tqdm(loader, desc="predict", unit="batch", disable=not progress):
        result.skipped += [(items[i].path, reason) for i, reason in failed]
        if x is None:
            continue
        with torch.inference_mode():
            logits = model.forward_all(x.to(device), names)
        for name in names:
            probs = logits[name].float().softmax(dim=1).cpu()
            p, c = probs.topk(min(top_k, probs.shape[1]), dim=1)
            for row, i in enumerate(indices):
                top = [(classes[name][k], float(v)) for k, v in zip(c[row].tolist(), p[row].tolist())]
                result.rows.append({"task": name, "image": str(items[i].path), "label": items[i].label,
                                    "pred": top[0][0], "prob": top[0][1], "top": top})
    return result


def _key(label: str) -> str:
    """Folder name vs class name: case-insensitive, and ``/`` (not allowed in a folder name) written as ``_``."""
    return label.replace("/", "_").casefold()


def score(result: Predictions, class_names: dict[str, list[str]]) -> dict[str, TaskScore]:
    """Per task: accuracy over labelled images whose folder name is one of its classes (compared case-insensitively,
    ``_`` standing for ``/``), and per true class the most common wrong prediction. Tasks with no labelled image are
    left out."""
    out: dict[str, TaskScore] = {}
    for name in result.tasks:
        rows = [r for r in result.rows if r["task"] == name and r["label"] is not None]
        if not rows:
            continue
        known = {_key(c): c for c in class_names[name]}
        scored = [(known[_key(r["label"])], r["pred"]) for r in rows if _key(r["label"]) in known]
        unknown = tuple(sorted({r["label"] for r in rows if _key(r["label"]) not in known}))
        per_class = []
        for cls in class_names[name]:
            preds = [p for t, p in scored if t == cls]
            if not preds:
                continue
            wrong = Counter(p for p in preds if p != cls).most_common(1)
            correct = sum(p == cls for p in preds)
            per_class.append({"class": cls, "n": len(preds), "correct": correct, "accuracy": correct / len(preds),
                              "top_confusion": wrong[0][0] if wrong else None, "confusion_n": wrong[0][1] if wrong else 0})
        out[name] = TaskScore(name, len(rows), len(scored), sum(t == p for t, p in scored), unknown, per_class)
    return out


def write_predictions(result: Predictions, path: str | Path) -> Path:
    """CSV (one row per task and image, columns top1..topk and p1..pk) or JSON (records), by the file suffix."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        records = [{**{k: v for k, v in r.items() if k != "top"}, "top": [{"class": c, "prob": p} for c, p in r["top"]]}
                   for r in result.rows]
        text = json.dumps({"tasks": list(result.tasks), "predictions": records,
                           "skipped": [{"image": str(p), "reason": why} for p, why in result.skipped]}, indent=1)
        return atomic_write_bytes(path, (text + "\n").encode())
    if path.suffix.lower() != ".csv":
        raise ValueError(f"output file {path} must end in .csv or .json")
    k = max((len(r["top"]) for r in result.rows), default=0)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["task", "image", "label", "pred", "prob"] + [f"{x}{j}" for j in range(1, k + 1) for x in ("top", "p")])
    for r in result.rows:
        cells = [c for cls, p in r["top"] for c in (cls, f"{p:.6f}")]
        writer.writerow([r["task"], r["image"], r["label"] or "", r["pred"], f"{r['prob']:.6f}"] + cells)
    return atomic_write_bytes(path, buf.getvalue().encode())


def describe_tasks(model: MultiTask, where: str) -> str:
    """One line naming every task the model serves and where its backbone came from."""
    parts = []
    for name in model.task_names:
        info = model.task(name)
        kind = f"rank {info.config.rank} from block {info.first_block})" if info.config else "head only)"
        parts.append(f"{name} ({info.num_classes} classes, {kind}")
    return f"{len(model.task_names)} task(s) on one frozen backbone, {where}: " + ", ".join(parts)


def describe_inputs(model: MultiTask, images: int, device: str) -> str:
    cfg = model.data_config
    return (f"input {'x'.join(map(str, cfg['input_size']))}, mean {cfg['mean']}, std {cfg['std']}, crop_pct "
            f"{cfg['crop_pct']}, {cfg['interpolation']}; {images} image(s) on {device}")


def sample_lines(result: Predictions, show: int) -> list[str]:
    """The first ``show`` predictions of every task, top-3 each."""
    lines = []
    for task in result.tasks:
        for r in [r for r in result.rows if r["task"] == task][:show]:
            label = f" (true: {r['label']})" if r["label"] is not None else ""
            lines.append(f"  {task}  {'/'.join(Path(r['image']).parts[-2:])}{label}: "
                         + ", ".join(f"{c} {p:.1%}" for c, p in r["top"][:3]))
    return lines


def score_lines(scores: dict[str, TaskScore]) -> list[str]:
    """Each task's accuracy on the labelled images and its per-class table with the most common confusion."""
    lines = []
    for task, sc in scores.items():
        if not sc.scored:
            lines.append(f"{task}: no folder label names one of its classes (labels: {', '.join(sc.unknown_labels[:8])})")
            continue
        extra = (f"; {sc.labelled - sc.scored} image(s) with other labels {list(sc.unknown_labels)} not scored"
                 if sc.unknown_labels else "")
        lines.append(f"{task}: accuracy {sc.accuracy:.2%} ({sc.correct}/{sc.scored} labelled images){extra}")
        width = max([len("true class")] + [len(c["class"]) for c in sc.per_class])
        lines.append(f"  {'true class':{width}s}  {'n':>5s}  {'acc':>7s}  most often confused with")
        for c in sc.per_class:
            confused = f"{c['top_confusion']} ({c['confusion_n']})" if c["top_confusion"] else "-"
            lines.append(f"  {c['class']:{width}s}  {c['n']:5d}  {c['accuracy']:7.1%}  {confused}")
    return lines


__all__ = [
    "describe_inputs", "describe_tasks", "sample_lines", "score_lines","ImageItem", "Predictions", "TaskScore", "eval_transform", "find_images", "predict", "required_class_names",
           "score", "write_predictions"]
