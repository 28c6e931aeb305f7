"""A pre-resized copy of the JPEG sets (Pets, Food101, Flowers102, FGVC-Aircraft, ImageNet-R), written once.

Why: those sets are full-size photos, and decoding a 500-px JPEG per image per epoch is what limits a GPU run on them
(``paper.plan`` models the rates). ``python -m adaptertune prepare`` (``training.prepare``) writes every image of a
set once with its shorter side resized to :data:`SHORT_SIDE` (aspect kept, bicubic, antialiased), and the paper data
path reads that copy when it exists and is complete, else the originals, saying which in one log line and recording
the cache folder (or None) in the dataset info (``info["data_path"]["jpeg_cache"]``, so each run's result says it).
The run id knows the complete caches of its dataset (:func:`complete_caches`): building or deleting one starts new
runs rather than giving one run id two sets of pixels.

Documented deviation: training crops (RandomResizedCrop to 224 px) are taken from the 256-short-side image instead of
the original: the crop then resamples an already downsized image, which costs a little fine detail for crops much
smaller than the image, in exchange for a decode several times cheaper. Evaluation is unchanged in effect: its
Resize to 256 then centre crop to 224 reads an image already at 256 (the cache is only used when the backbone's eval
resize is at most :data:`SHORT_SIDE`). Images whose shorter side is already at most 256 are copied byte for byte (no
upscaling, no re-encoding), so they are exactly the originals.

Format: JPEG at quality 95 with full-resolution chroma (4:4:4). PNG would be lossless, but several times larger and
slower to decode than JPEG at this size, and fast decoding is the point; at q95 4:4:4 the re-encoding error is far
below what a random resized crop's resampling changes anyway.

Layout: ``<datasets root>/.resized/<name>/<key>/`` with ``images/<path relative to the datasets root>`` and
``manifest.json``; ``key`` is a digest of the sorted relative file list and the size, so a changed file list (another
copy, a new split) gets a new cache and never reads a stale one. A cache is built in a temporary sibling folder and
renamed into place after its manifest is written: a half-written cache is never under ``<key>``, and a folder there
without a manifest that matches is ignored. File contents are not hashed: replace files under the same names and
delete ``.resized/<name>`` by hand.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import socket
import sys
from collections.abc import Callable, Iterable
from functools import lru_cache
from pathlib import Path

from PIL import Image
from torch.utils.data import ConcatDataset, Dataset, Subset

from ..atomic import atomic_write_bytes
from .registry import JPEG_SETS

SHORT_SIDE = 256  # = floor(224 / 0.875): the default; a cache is built and read at the runs' own eval resize
QUALITY = 95
FORMAT_VERSION = 1
FOLDER = ".resized"
MANIFEST = "manifest.json"


def _leaves(dataset: Dataset) -> list[Dataset]:
    """The datasets holding file paths under any Subset / ConcatDataset wrappers, each once."""
    if isinstance(dataset, Subset):
        return _leaves(dataset.dataset)
    if isinstance(dataset, ConcatDataset):
        return [leaf for part in dataset.datasets for leaf in _leaves(part)]
    return [dataset]


def _path_attr(dataset: Dataset) -> str:
    for attr in ("samples", "_images", "_image_files"):  # ImageFolder / FileListDataset, OxfordIIITPet, the others
        if isinstance(getattr(dataset, attr, None), list):
            return attr
    raise TypeError(f"{type(dataset).__name__} keeps no list of image files this cache knows "
                    "(samples, _images, _image_files)")


def image_files(datasets: Iterable[Dataset]) -> list[Path]:
    """Every image file the datasets read, sorted and each once."""
    files: set[Path] = set()
    for leaf in {id(d): d for ds in datasets for d in _leaves(ds)}.values():
        attr = _path_attr(leaf)
        files.update(Path(item[0] if attr == "samples" else item) for item in getattr(leaf, attr))
    return sorted(files)


def _relative(files: list[Path], root: Path) -> list[str]:
    """Each file's path under ``root``, as the dataset named it: a symlinked dataset folder (common on clusters: the
    data lives on a shared mount) stays under the root it was reached through."""
    out = []
    for path in files:
        for base in (root, root.resolve()):
            rel = Path(os.path.relpath(path, base))
            if rel.parts[:1] != ("..",):
                break
        else:
            raise ValueError(f"an image file lies outside the datasets root {root}: {path}")
        out.append(rel.as_posix())
    return out


def cache_key(relative: list[str], short_side: int = SHORT_SIDE) -> str:
    """16 hex digits over (relative file list, size, quality, format): the cache folder's name."""
    payload = {"files": relative, "short_side": short_side, "quality": QUALITY, "format": FORMAT_VERSION}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def cache_dir(name: str, root: Path, key: str) -> Path:
    return root / FOLDER / name / key


def is_complete(folder: Path, key: str, count: int) -> bool:
    """True when ``folder`` holds a finished cache for ``key`` (its manifest names the key and the file count)."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return manifest.get("key") == key and manifest.get("count") == count and manifest.get("complete") is True


def resize_into(source: Path, target: Path, short_side: int = SHORT_SIDE) -> None:
    """Write ``source`` to ``target`` with its shorter side at ``short_side`` (torchvision Resize's rounding); an
    image already that small or smaller is copied unchanged."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(source) as image:
        width, height = image.size
        if min(width, height) <= short_side:
            shutil.copyfile(source, target)
            return
        if width <= height:
            size = (short_side, int(short_side * height / width))
        else:
            size = (int(short_side * width / height), short_side)
        image.convert("RGB").resize(size, Image.Resampling.BICUBIC).save(target, format="JPEG", quality=QUALITY,
                                                                          subsampling=0)


def build_cache(name: str, datasets: Iterable[Dataset], root: Path, *, short_side: int = SHORT_SIDE,
                say: Callable[[str], None] = print) -> Path:
    """Write (or find) the pre-resized cache of the images ``datasets`` read; returns its folder.

    Builds run in ``.tmp-<key>-<host>-<pid>`` and are renamed into place. ``prepare`` serialises builds with a lock,
    but a lock can be node-local on a network file system, so a build also survives a second builder: it removes
    only its own host's temporary folders whose process is gone, never deletes a complete cache, and when another
    builder finished first it keeps that one.
    """
    if name not in JPEG_SETS:
        raise ValueError(f"no JPEG cache for {name!r}: only the JPEG sets {JPEG_SETS} are pre-resized")
    files = image_files(datasets)
    relative = _relative(files, root)
    key = cache_key(relative, short_side)
    final = cache_dir(name, root, key)
    if is_complete(final, key, len(files)):
        say(f"[data] {name}: pre-resized cache already complete at {final}")
        return final
    host = socket.gethostname()
    for stale in final.parent.glob(f".tmp-{key}-{host}-*"):
        if not _alive(stale.name.rsplit("-", 1)[-1]):  # a killed build on this host; another host's is not ours
            shutil.rmtree(stale, ignore_errors=True)
    tmp = final.parent / f".tmp-{key}-{host}-{os.getpid()}"
    tmp.mkdir(parents=True)
    try:
        for source, rel in zip(files, relative):
            resize_into(source, tmp / "images" / rel, short_side)
        manifest = {"key": key, "dataset": name, "count": len(files), "short_side": short_side, "quality": QUALITY,
                    "format": FORMAT_VERSION, "files": relative, "complete": True}
        atomic_write_bytes(tmp / MANIFEST, json.dumps(manifest, indent=1).encode())
        if is_complete(final, key, len(files)):  # another builder finished first: its copy is the same
            return final
        if final.exists():  # a folder without a matching manifest: never used, replaced
            shutil.rmtree(final)
        try:
            os.rename(tmp, final)
        except OSError:
            if not is_complete(final, key, len(files)):  # not another builder's finished rename: a real failure
                raise
            return final
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    say(f"[data] {name}: wrote the pre-resized cache of {len(files)} images (shorter side {short_side}) to {final}")
    return final


def complete_caches(name: str, root: Path) -> tuple[str, ...]:
    """The keys of the complete caches of ``name`` under ``root``, sorted: what a run of ``name`` may read instead of
    the originals. The run id hashes them (``digests.split_digest``), so a run before ``prepare`` and one after it,
    which crop from different pixels, are two runs and an interrupted run never resumes across the change."""
    keys = []
    for manifest in sorted((root / FOLDER / name).glob(f"*/{MANIFEST}")):
        try:
            stat = manifest.stat()
        except OSError:
            continue
        if _manifest_complete(str(manifest), stat.st_mtime_ns, stat.st_size):
            keys.append(manifest.parent.name)
    return tuple(keys)


@lru_cache(maxsize=64)
def _manifest_complete(path: str, mtime_ns: int, size: int) -> bool:
    """Whether a manifest marks a finished cache under its own key (read once per file version: Food101's lists
    100,000 files, and planning computes hundreds of run ids)."""
    try:
        manifest = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return False
    return (manifest.get("complete") is True and manifest.get("key") == Path(path).parent.name
            and manifest.get("count") == len(manifest.get("files", ())))


def _alive(pid: str) -> bool:
    """Whether a process of this host with that pid still runs (a pid we cannot read counts as alive: keep its
    folder)."""
    if not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _retarget(datasets: Iterable[Dataset], mapping: dict[Path, Path]) -> None:
    """Point every file list of ``datasets`` at the cached copies (in place; labels and order unchanged)."""
    for leaf in {id(d): d for ds in datasets for d in _leaves(ds)}.values():
        attr = _path_attr(leaf)
        items = getattr(leaf, attr)
        if attr == "samples":
            new = [(str(mapping[Path(p)]), label) for p, label in items]
            leaf.samples = new
            if isinstance(getattr(leaf, "imgs", None), list):
                leaf.imgs = new
        else:
            setattr(leaf, attr, [type(p)(mapping[Path(p)]) for p in items])


def eval_resize(cfg: dict) -> int:
    """The shorter side the eval transform resizes to (``transforms.paper_transforms``)."""
    _, height, width = cfg["input_size"]
    return math.floor(max(height, width) / cfg["crop_pct"])


def use_cache(name: str, datasets: list[Dataset], root: Path, cfg: dict,
              say: Callable[[str], None] | None = None) -> Path | None:
    """Read ``datasets`` from the complete cache of their file list when there is one (returns its folder), else
    leave them on the originals (returns None); one log line says which."""
    say = say or (lambda text: print(text, file=sys.stderr, flush=True))
    files = image_files(datasets)
    try:
        relative = _relative(files, root)
    except ValueError as err:  # the cache is an optimisation: never a reason not to train
        say(f"[data] {name}: reading the original images ({err})")
        return None
    side = eval_resize(cfg)  # the cache must hold exactly what evaluation resizes to, so evaluation is unchanged
    key = cache_key(relative, side)
    folder = cache_dir(name, root, key)
    if not is_complete(folder, key, len(files)):
        say(f"[data] {name}: reading the original images (no complete pre-resized cache at shorter side {side} at "
            f"{folder}; `python -m adaptertune prepare` writes it)")
        return None
    _retarget(datasets, {p: folder / "images" / rel for p, rel in zip(files, relative)})
    say(f"[data] {name}: reading the pre-resized cache at {folder}")
    return folder


__all__ = ["QUALITY", "SHORT_SIDE", "build_cache", "cache_dir", "cache_key", "complete_caches", "eval_resize",
           "image_files", "is_complete", "resize_into", "use_cache"]
