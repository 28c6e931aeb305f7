"""Local Hugging Face hub cache entries for timm models, made from random weights (for offline rehearsals).

``timm.create_model(name, pretrained=True)`` resolves a tag to its ``hf_hub_id`` and asks ``huggingface_hub`` for
``model.safetensors`` of that repository. Offline (``HF_HUB_OFFLINE=1``), the hub looks only in its cache:
``<cache>/models--<org>--<repo>/refs/main`` names a commit, ``snapshots/<commit>/model.safetensors`` is the
file (a link to ``blobs/<sha256>``). Writing that entry from a randomly initialised model of the same
architecture lets the whole loading path run — tag resolution, ``pretrained_cfg``, timm's checkpoint filter,
the classifier reset, the per-tag mean/std and crop — without the real weights. The weights are timm's own
format (``timm.models.save_for_hf``: the model's ``state_dict`` in safetensors, plus its ``config.json``).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import timm
import torch
from huggingface_hub.file_download import repo_folder_name
from timm.models import save_for_hf

from adaptertune.backbones import resolve_name

WEIGHTS_FILE = "model.safetensors"  # what timm asks the hub for first (its safetensors alternative)


def hub_repo_id(name: str) -> str:
    """The hub repository timm loads ``name`` from (paper names and aliases resolve to their pinned tag)."""
    full = resolve_name(name)
    cfg = timm.models.get_pretrained_cfg(full)
    if cfg is None or not cfg.hf_hub_id:
        raise ValueError(f"timm has no hub weights for {full!r}: pass a tagged timm name with an hf_hub_id "
                         "(e.g. vit_small_patch16_224.augreg_in1k)")
    return cfg.hf_hub_id


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_hub_entry(name: str, cache_dir: str | Path, seed: int = 0) -> Path:
    """Put random weights for ``name`` where ``pretrained=True`` finds them under ``cache_dir`` (``HF_HUB_CACHE``).

    Returns the snapshot's ``model.safetensors``. Files are stored as the hub stores them: content-addressed
    blobs, a snapshot folder of relative links named by a (made-up, deterministic) commit, and ``refs/main``.
    Calling it again replaces the entry.
    """
    full = resolve_name(name)
    repo_id = hub_repo_id(full)
    repo = Path(cache_dir) / repo_folder_name(repo_id=repo_id, repo_type="model")
    if repo.exists():
        shutil.rmtree(repo)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = timm.create_model(full, pretrained=False)  # the tag's own head size, as the real checkpoint has
    (repo / "blobs").mkdir(parents=True)
    with tempfile.TemporaryDirectory(dir=repo) as staging:
        save_for_hf(model, staging, safe_serialization=True)
        files = {p.name: p for p in Path(staging).iterdir() if p.is_file()}
        commit = hashlib.sha1(f"{repo_id}@{_sha256(files[WEIGHTS_FILE])}".encode()).hexdigest()  # 40 hex digits
        snapshot = repo / "snapshots" / commit
        snapshot.mkdir(parents=True)
        for file_name, path in files.items():
            blob = repo / "blobs" / _sha256(path)
            os.replace(path, blob)
            (snapshot / file_name).symlink_to(os.path.relpath(blob, snapshot))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return snapshot / WEIGHTS_FILE


__all__ = ["WEIGHTS_FILE", "hub_repo_id", "write_hub_entry"]
