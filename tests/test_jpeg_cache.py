"""The JPEG sets' pre-resized cache (issue #16): built once, reused, rebuilt for a new file list, never half used."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from adaptertune.config import RunConfig
from adaptertune.data import jpeg_cache, load_dataset
from adaptertune.data.paper import write_jpeg_cache

import fixtures_data as fx

CFG = {"input_size": (3, 224, 224), "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "crop_pct": 0.875,
       "interpolation": "bicubic"}  # evaluation resizes to 256: the cache's default shorter side
BIG = "oxford-iiit-pet/images/Abyssinian_1.jpg"  # replaced by a 400x300 photo: resized to 341x256


@pytest.fixture()
def pets(isolated_home) -> Path:
    root = isolated_home / "datasets"
    fx.write_pets(root)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)).save(root / BIG, quality=90)
    return root


def _load(root: Path, cfg: dict = CFG):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*partial copy.*")
        return load_dataset("pets", profile="paper", root=root, data_config=cfg)


def _quiet(_: str) -> None:
    pass


def test_cache_is_built_once_resized_and_read(pets, capsys):
    assert _load(pets).info["data_path"]["jpeg_cache"] is None
    assert "reading the original images" in capsys.readouterr().err
    folder = write_jpeg_cache("pets", pets, say=_quiet)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["complete"] and manifest["count"] == 21 and folder.parent.name == "pets"
    with Image.open(folder / "images" / BIG) as big:
        assert big.size == (341, 256) and big.format == "JPEG"
    small = "oxford-iiit-pet/images/Bengal_1.jpg"  # 40x30: copied byte for byte, never upscaled
    assert (folder / "images" / small).read_bytes() == (pets / small).read_bytes()
    stamp = (folder / "manifest.json").stat().st_mtime_ns
    assert write_jpeg_cache("pets", pets, say=_quiet) == folder  # found, not rewritten
    assert (folder / "manifest.json").stat().st_mtime_ns == stamp
    splits = _load(pets)
    assert "reading the pre-resized cache" in capsys.readouterr().err
    assert splits.info["data_path"]["jpeg_cache"] == str(folder)
    base = splits.train.base.dataset  # TransformedDataset -> Subset -> OxfordIIITPet
    assert all(Path(p).is_relative_to(folder) for p in base._images)
    x, y = splits.test[0]
    assert x.shape == (3, 224, 224)
    # a run whose evaluation resizes to another size (crop_pct 0.9: 248 px) reads the originals, not this cache
    assert _load(pets, {**CFG, "crop_pct": 0.9}).info["data_path"]["jpeg_cache"] is None
    assert "no complete pre-resized cache at shorter side 248" in capsys.readouterr().err


def test_a_symlinked_dataset_folder_reads_its_cache(pets, tmp_path):
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "oxford-iiit-pet").symlink_to(pets / "oxford-iiit-pet")  # the data on a shared mount, linked in
    folder = write_jpeg_cache("pets", linked, say=_quiet)
    assert _load(linked).info["data_path"]["jpeg_cache"] == str(folder)


def test_a_changed_file_list_gets_a_new_cache(pets, capsys):
    first = write_jpeg_cache("pets", pets, say=_quiet)
    trainval = pets / "oxford-iiit-pet/annotations/trainval.txt"
    fx._jpeg(pets / "oxford-iiit-pet/images/Bengal_99.jpg", np.random.default_rng(1))
    trainval.write_text(trainval.read_text() + "Bengal_99 6 1 99\n")
    assert _load(pets).info["data_path"]["jpeg_cache"] is None  # the old cache does not match the new list
    assert "no complete pre-resized cache" in capsys.readouterr().err
    second = write_jpeg_cache("pets", pets, say=_quiet)
    assert second != first and second.parent == first.parent
    assert _load(pets).info["data_path"]["jpeg_cache"] == str(second)


def test_a_half_written_cache_is_never_used(pets, monkeypatch):
    real, written = jpeg_cache.resize_into, []

    def dies_after_three(source, target, short_side=jpeg_cache.SHORT_SIDE):
        if len(written) == 3:
            raise KeyboardInterrupt  # killed mid-build
        written.append(target)
        real(source, target, short_side)

    monkeypatch.setattr(jpeg_cache, "resize_into", dies_after_three)
    with pytest.raises(KeyboardInterrupt):
        write_jpeg_cache("pets", pets, say=_quiet)
    monkeypatch.setattr(jpeg_cache, "resize_into", real)
    assert not [p for p in (pets / ".resized" / "pets").iterdir() if not p.name.startswith(".tmp-")]
    assert _load(pets).info["data_path"]["jpeg_cache"] is None
    folder = write_jpeg_cache("pets", pets, say=_quiet)
    (folder / "manifest.json").unlink()  # a folder under the key without its manifest (e.g. a partial copy)
    assert _load(pets).info["data_path"]["jpeg_cache"] is None
    (folder / "manifest.json").write_text(json.dumps({"key": folder.name, "count": 3, "complete": True}))
    assert _load(pets).info["data_path"]["jpeg_cache"] is None  # wrong count: not this cache
    assert write_jpeg_cache("pets", pets, say=_quiet) == folder  # rebuilt in place
    assert _load(pets).info["data_path"]["jpeg_cache"] == str(folder)
    assert not list(folder.parent.glob(".tmp-*"))


def test_folder_datasets_and_subsets_are_retargeted(isolated_home):
    root = isolated_home / "datasets"
    fx.write_imagenet_r(root)
    folder = write_jpeg_cache("imagenet_r", root, say=_quiet)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*partial copy.*")
        splits = load_dataset("imagenet_r", profile="paper", root=root, data_config=CFG)
    assert splits.info["data_path"]["jpeg_cache"] == str(folder)
    assert splits.train[0][0].shape == (3, 224, 224)
    with pytest.raises(ValueError, match="no JPEG cache for 'cifar10'"):
        jpeg_cache.build_cache("cifar10", [], root)


def test_prepare_writes_the_cache(pets, monkeypatch):
    from adaptertune.training.prepare import prepare_inputs

    monkeypatch.setenv("ADAPTERTUNE_DATASETS", str(pets))
    cfg = RunConfig(dataset="pets", backbone="deit_tiny_patch16_224", method="head", profile="paper",
                    pretrained=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*partial copy.*")
        done = prepare_inputs([cfg], say=_quiet)
    assert "jpeg cache pets (248 px)" in done  # DeiT-T evaluates at crop_pct 0.9: 224 / 0.9 -> 248
    assert len([p for p in (pets / ".resized" / "pets").iterdir() if not p.name.startswith(".")]) == 1


def test_a_build_removes_only_its_own_hosts_dead_temporary_folders(pets):
    import shutil
    import socket

    folder = write_jpeg_cache("pets", pets, say=_quiet)
    shutil.rmtree(folder)
    dead = folder.parent / f".tmp-{folder.name}-{socket.gethostname()}-999999999"  # a killed build on this host
    other = folder.parent / f".tmp-{folder.name}-another-node-12"  # a build on another node: maybe still running
    dead.mkdir()
    other.mkdir()
    assert write_jpeg_cache("pets", pets, say=_quiet) == folder and (folder / "manifest.json").is_file()
    assert not dead.exists() and other.exists()


def test_the_run_id_knows_whether_a_complete_cache_exists(pets, monkeypatch):
    """Training crops from the cache's pixels once it exists: a run before `prepare` and one after are two runs."""
    monkeypatch.setenv("ADAPTERTUNE_DATASETS", str(pets))  # where runs look for the datasets (and their caches)
    cfg = RunConfig(dataset="pets", backbone="vit_small_patch16_224", method="adapter", profile="paper")
    other = RunConfig(dataset="cifar10", backbone="vit_small_patch16_224", method="adapter", profile="paper")
    before, other_before = cfg.run_id, other.run_id
    assert jpeg_cache.complete_caches("pets", pets) == ()
    folder = write_jpeg_cache("pets", pets, say=_quiet)
    assert jpeg_cache.complete_caches("pets", pets) == (folder.name,)
    after = cfg.run_id
    assert after != before and other.run_id == other_before  # only the JPEG set's runs move
    (folder.parent / f".tmp-{folder.name}-host-1").mkdir()  # a build in progress elsewhere changes nothing
    assert cfg.run_id == after
    (folder / "manifest.json").unlink()  # no longer complete: back to the originals' run
    assert cfg.run_id == before
