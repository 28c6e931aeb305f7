"""adaptertune.data: paper loaders on real-format fixtures, mini datasets on the real files, splits, loader."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from adaptertune import paths
from adaptertune.data import (DATASETS, BatchAugment, DatasetNotFoundError, DataSplits, SplitFileError, load_dataset,
                              make_loader)
from adaptertune.data import mini as mini_mod
from adaptertune.data import paper as paper_mod
from adaptertune.data.splits import cap, holdout_split, stratified_first

import fixtures_data as fx

CFG = fx.PAPER_CFG
GRAY = {"input_size": (1, 20, 20), "mean": (0.3,), "std": (0.4,), "crop_pct": 1.0, "interpolation": "bilinear"}
REAL_CLASSES = {"cifar10": 10, "cifar100": 100, "svhn": 10, "pets": 37, "food101": 101, "flowers102": 102,
                "aircraft": 100, "imagenet_r": 200, "tiny_imagenet": 200, "fmnist_source": 5, "fmnist_target": 5,
                "fmnist_lowdata": 5, "digits": 10}
HAVE_FMNIST = any(all(mini_mod._find(d, s) for s in mini_mod.FMNIST_FILES.values())
                  for d in mini_mod.fmnist_search_dirs(None))
needs_fmnist = pytest.mark.skipif(not HAVE_FMNIST, reason="Fashion-MNIST idx files absent: `make setup` installs "
                                  "the Debian package dataset-fashion-mnist (/usr/share/datasets/fashion-mnist)")


@pytest.fixture()
def home(isolated_home):
    """Splits and default dataset roots under tmp_path, never the repository's data/."""
    return isolated_home


_write = fx.write_patched
_load = fx.load_paper


# --- registry ----------------------------------------------------------------------------------------------
def test_registry_declares_the_real_class_counts():
    assert {k: s.num_classes for k, s in DATASETS.items()} == REAL_CLASSES
    assert set(paper_mod.REQUIRED) == {k for k, s in DATASETS.items() if s.kind == "paper"}
    with pytest.raises(ValueError, match="cifar10.*digits|allowed|use one of"):
        load_dataset("cifar11")


# --- paper loaders on real-format fixtures ----------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(fx.WRITERS))
def test_paper_loader_reads_real_format(name, home, monkeypatch):
    root = home / "datasets"
    facts = _write(name, root, monkeypatch)
    s = _load(name, root)
    assert isinstance(s, DataSplits) and s.train_augment is None
    assert s.num_classes == REAL_CLASSES[name] == len(s.class_names)
    n_train_source = facts.get("train", facts.get("total", 0) - s.info["source_sizes"]["test"])
    assert len(s.train) + len(s.val) == s.info["source_sizes"]["train"] == n_train_source
    assert len(s.val) == round(0.1 * n_train_source) and len(s.train_eval) == len(s.train)
    if "test" in facts:
        assert len(s.test) == facts["test"]
    assert s.info["classes_found"] == facts["classes"]
    for split in (s.train, s.val, s.test, s.train_eval):
        x, y = split[0]
        assert x.shape == (3, 24, 24) and x.dtype == torch.float32
        assert 0 <= y < s.num_classes and isinstance(y, int)
        assert -1.0001 <= x.min() and x.max() <= 1.0001  # normalised with mean = std = 0.5
    xb, yb = next(iter(make_loader(s.test, batch_size=4, shuffle=False)))
    assert xb.shape[1:] == (3, 24, 24) and yb.dtype == torch.int64 and int(yb.max()) < s.num_classes
    assert torch.equal(s.test[0][0], s.test[0][0])  # eval transforms are deterministic
    json.dumps(s.info)


def test_paper_loader_labels_and_names_match_files(home, monkeypatch):
    root = home / "datasets"
    _write("svhn", root, monkeypatch)
    s = _load("svhn", root, limit=None)
    labels = sorted(int(s.test[i][1]) for i in range(len(s.test)))
    assert labels == list(range(10))  # SVHN's '10' is digit 0
    _write("pets", root, monkeypatch)
    p = _load("pets", root)
    assert p.class_names[5] == "Bengal" and p.class_names[1] == "American Bulldog"
    assert p.class_names[2].startswith("class_")  # absent from this partial copy
    _write("aircraft", root, monkeypatch)
    a = _load("aircraft", root)
    assert a.class_names[:3] == list(fx.AIRCRAFT_VARIANTS)
    _write("tiny_imagenet", root, monkeypatch)
    t = _load("tiny_imagenet", root)
    assert t.class_names[0] == "goldfish"


def test_partial_copy_warns_and_keeps_real_head_size(home, monkeypatch):
    root = home / "datasets"
    _write("food101", root, monkeypatch)
    with pytest.warns(UserWarning, match="found 3 of its 101 classes"):
        s = load_dataset("food101", profile="paper", root=root, data_config=CFG)
    assert s.num_classes == 101


def test_grayscale_config_and_paper_transform_sizes(home, monkeypatch):
    root = home / "datasets"
    _write("cifar10", root, monkeypatch)
    s = _load("cifar10", root, data_config=GRAY)
    assert s.train[0][0].shape == (1, 20, 20) and s.test[0][0].shape == (1, 20, 20)
    d = _load("cifar10", root, data_config={**CFG, "input_size": (3, 224, 224)})
    assert "Resize(size=256" in d.info["transform"]["eval"] and "CenterCrop(size=(224, 224)" in d.info["transform"]["eval"]
    assert "RandomResizedCrop" in d.info["transform"]["train"] and "bicubic" in d.info["transform"]["train"]


def test_limit_caps_every_split_deterministically(home, monkeypatch):
    root = home / "datasets"
    _write("cifar10", root, monkeypatch)
    a, b = _load("cifar10", root, limit=5), _load("cifar10", root, limit=5)
    assert a.sizes() == {"train": 5, "val": 3, "test": 5, "train_eval": 5}
    assert [a.test[i][1] for i in range(5)] == [b.test[i][1] for i in range(5)]
    assert len({a.test[i][1] for i in range(5)}) == 4  # class-balanced, not the first images of one class


@pytest.mark.parametrize("name", sorted(paper_mod.REQUIRED))
def test_missing_paper_dataset_names_path_and_command(name, home):
    root = home / "nowhere"
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset(name, profile="paper", root=root)
    msg = str(err.value)
    assert str(root) in msg and f"python -m adaptertune.data download {name}" in msg
    assert DATASETS[name].url in msg and isinstance(err.value, FileNotFoundError)


def test_checksum_mismatch_is_a_clear_error(home, monkeypatch):
    root = home / "datasets"
    _write("cifar10", root, monkeypatch)
    (root / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"tampered")
    with pytest.raises(DatasetNotFoundError, match="checksum"):
        _load("cifar10", root)


def test_download_flag_calls_the_downloader(home, monkeypatch):
    root = home / "datasets"
    calls = []
    monkeypatch.setattr(paper_mod, "_download", lambda name, r: calls.append(name) or fx.write_food101(r))
    monkeypatch.setenv("ADAPTERTUNE_DOWNLOAD", "1")
    s = _load("food101", root)
    assert calls == ["food101"] and len(s.test) == 6
    _load("food101", root)
    assert calls == ["food101"]  # present now: no second download
    monkeypatch.setenv("ADAPTERTUNE_DOWNLOAD", "maybe")
    with pytest.raises(ValueError, match="ADAPTERTUNE_DOWNLOAD"):
        _load("food101", root)


# --- user ImageFolder datasets ---------------------------------------------------------------------------
def test_image_folder_without_test_folder(home):
    root = fx.write_image_folder(home / "mydata")
    s = load_dataset(str(root), profile="mini", seed=1)
    assert s.num_classes == 3 and s.class_names == ["cat", "dog", "fox"]
    assert len(s.test) == 3 * round(6 * 0.2) and len(s.train) + len(s.val) == 18 - len(s.test)
    assert s.train[0][0].shape == (1, 28, 28)  # mini default: grayscale 28x28
    assert Path(s.info["test_split_file"]).parent == paths.splits_dir()
    again = load_dataset(str(root), profile="mini", seed=1)
    assert [again.val[i][1] for i in range(len(again.val))] == [s.val[i][1] for i in range(len(s.val))]
    fx.write_image_folder(root, per_class=8)  # more images of every class: new splits, not a refusal of the old
    grown = load_dataset(str(root), profile="mini", seed=1)
    assert len(grown.train) + len(grown.val) + len(grown.test) == 24
    assert grown.info["test_split_file"] != s.info["test_split_file"]


def test_image_folder_with_test_folder(home):
    root = fx.write_image_folder(home / "pets2", test_per_class=2, test_classes=("cat", "fox"))
    s = load_dataset(str(root), profile="paper", data_config=CFG)
    assert len(s.train) + len(s.val) == 18 and len(s.test) == 4
    assert sorted(s.test[i][1] for i in range(4)) == [0, 0, 2, 2]  # matched by class name, not position
    fx.write_image_folder(home / "bad", test_per_class=1, test_classes=("cat", "wolf"))
    with pytest.raises(ValueError, match="wolf"):
        load_dataset(str(home / "bad"))
    with pytest.raises(DatasetNotFoundError, match="not a directory"):
        load_dataset(str(home / "missing_dir"))


# --- splits ----------------------------------------------------------------------------------------------
def test_holdout_split_is_stored_deterministic_and_checked(home):
    labels = np.arange(200) % 4
    tr, va, path = holdout_split("toy", labels, seed=3, val_fraction=0.1)
    assert path.parent == paths.splits_dir() and str(path).startswith(str(home))
    assert len(va) == 20 and not set(tr) & set(va) and sorted([*tr, *va]) == list(range(200))
    path.unlink()
    tr2, va2, _ = holdout_split("toy", labels, seed=3, val_fraction=0.1)  # recomputed, not just re-read
    assert np.array_equal(tr, tr2) and np.array_equal(va, va2)
    _, va3, _ = holdout_split("toy", labels, seed=4, val_fraction=0.1)
    assert not np.array_equal(va, va3)
    payload = json.loads(path.read_text())
    assert payload["dataset"] == "toy" and payload["seed"] == 3 and payload["source_size"] == 200
    with pytest.raises(SplitFileError, match="source_size"):
        holdout_split("toy", np.arange(150) % 4, seed=3, val_fraction=0.1)  # the files on disk changed
    with pytest.raises(SplitFileError, match="labels_sha256"):
        holdout_split("toy", (np.arange(200) + 1) % 4, seed=3, val_fraction=0.1)
    path.write_text(json.dumps({**payload, "val": payload["train"][:3] + payload["val"][3:]}))
    with pytest.raises(SplitFileError, match="overlaps"):
        holdout_split("toy", labels, seed=3, val_fraction=0.1)
    path.write_text("{not json")
    with pytest.raises(SplitFileError, match="not JSON"):
        holdout_split("toy", labels, seed=3, val_fraction=0.1)
    assert not list(path.parent.glob("*.tmp"))


def test_dataset_splits_differ_by_seed_and_repeat(home):
    a, b, c = (load_dataset("digits", seed=s) for s in (0, 0, 1))
    assert torch.equal(a.val.tensors[1], b.val.tensors[1]) and torch.equal(a.val.tensors[0], b.val.tensors[0])
    assert not torch.equal(a.val.tensors[0], c.val.tensors[0])
    assert torch.equal(a.test.tensors[0], c.test.tensors[0])  # the test split does not depend on the seed
    train_rows = {r.numpy().tobytes() for r in a.train.tensors[0]}
    assert not any(r.numpy().tobytes() in train_rows for r in a.val.tensors[0])
    assert Path(a.info["split_file"]).is_file() and a.info["split_file"].startswith(str(home))


def test_stratified_caps():
    labels = np.repeat(np.arange(3), [10, 5, 1])
    order = np.random.default_rng(0).permutation(16)
    picked = stratified_first(order, labels, k=6)
    counts = np.bincount(labels[picked], minlength=3)
    assert counts[2] == 1 and sorted(counts[:2].tolist()) == [2, 3]  # no class emptied while another keeps extras
    per = stratified_first(order, labels, per_class=2)
    assert np.bincount(labels[per]).tolist() == [2, 2, 1]
    assert list(per) == [i for i in order if i in set(per.tolist())]  # keeps the permutation's order
    assert len(cap(np.arange(16), labels, None)) == 16 and len(cap(np.arange(16), labels, 4, shuffle_first=True)) == 4


# --- mini datasets (real files) -----------------------------------------------------------------------------
@needs_fmnist
def test_fmnist_halves_are_disjoint_real_transfer(home):
    src, tgt = load_dataset("fmnist_source"), load_dataset("fmnist_target")
    assert not set(src.class_names) & set(tgt.class_names)
    assert sorted(src.class_names + tgt.class_names) == sorted(mini_mod.FMNIST_CLASSES)
    assert src.sizes() == {"train": 27000, "val": 3000, "test": 5000, "train_eval": 27000}
    assert tgt.sizes() == {"train": 2250, "val": 250, "test": 3000, "train_eval": 2250}
    assert tgt.train.tensors[0].shape[1:] == (1, 28, 28) and tgt.train.tensors[0].dtype == torch.float32
    assert abs(float(tgt.test.tensors[0].mean())) < 1.0 and tgt.train_augment.hflip
    pool = np.bincount(tgt.train.tensors[1].numpy()) + np.bincount(tgt.val.tensors[1].numpy())
    assert pool.tolist() == [500] * 5  # class-balanced pool, then a random 10% validation
    low = load_dataset("fmnist_lowdata", seed=2, val_fraction=0.4)  # the mini recipe's lowdata split
    low_pool = np.bincount(low.train.tensors[1].numpy(), minlength=5) + np.bincount(low.val.tensors[1].numpy(), minlength=5)
    assert low_pool.tolist() == [75] * 5 and low.sizes()["train"] == 225 and low.sizes()["val"] == 150
    # the test share is fixed and stratified: every seed and both target datasets score the same 600 images per class
    assert np.bincount(tgt.test.tensors[1].numpy()).tolist() == [600] * 5
    assert all(torch.equal(a, b) for a, b in zip(low.test.tensors, tgt.test.tensors))
    assert json.dumps(low.info) and low.info["source"]["train_images"].endswith(("ubyte", ".gz"))


@needs_fmnist
def test_mini_data_config_resizes_and_limit(home):
    s = load_dataset("fmnist_target", data_config=CFG, limit=16)
    assert s.sizes() == {"train": 16, "val": 16, "test": 16, "train_eval": 16}
    assert s.train.tensors[0].shape == (16, 3, 24, 24)
    assert np.bincount(s.test.tensors[1].numpy()).min() >= 3


def test_large_inputs_are_prepared_per_batch(home, monkeypatch):
    """Above MATERIALISE_MAX_BYTES the stored 28x28 images are resized per batch, with the same result."""
    eager = load_dataset("digits", data_config=CFG, limit=12)
    monkeypatch.setattr(mini_mod, "MATERIALISE_MAX_BYTES", 0)
    lazy = load_dataset("digits", data_config=CFG, limit=12)
    assert lazy.train.prep is not None and lazy.train.tensors[0].shape[1:] == (1, 28, 28)
    xe, ye = next(iter(make_loader(eager.train, batch_size=12, shuffle=True, seed=3)))
    xl, yl = next(iter(make_loader(lazy.train, batch_size=12, shuffle=True, seed=3)))
    assert xl.shape == (12, 3, 24, 24) and torch.equal(ye, yl) and torch.allclose(xe, xl)
    assert torch.allclose(lazy.train[0][0], eager.train[0][0])


def test_cli_list_and_check(home, capsys):
    from adaptertune.data.__main__ import main

    assert main(["list"]) == 0 and "tiny_imagenet" in capsys.readouterr().out
    assert main(["check", "digits"]) == 0 and '"train": 1132' in capsys.readouterr().out
    assert main(["check", "cifar10"]) == 1 and "python -m adaptertune.data download cifar10" in capsys.readouterr().err


def test_missing_fmnist_names_the_apt_package(home):
    with pytest.raises(DatasetNotFoundError, match="apt-get install dataset-fashion-mnist") as err:
        load_dataset("fmnist_target", root=home / "empty")
    assert str(home / "empty") in str(err.value)


def test_digits_far_domain_no_flip(home):
    d = load_dataset("digits")
    assert d.num_classes == 10 and d.sizes()["test"] == 539 and not d.train_augment.hflip
    assert sum(d.sizes()[k] for k in ("train", "val", "test")) == 1797
    x = d.train.tensors[0]
    assert x.shape[1:] == (1, 28, 28) and torch.isfinite(x).all()


# --- batch augmentation ------------------------------------------------------------------------------------
def test_train_augment_deterministic_and_shaped():
    x = torch.randn(6, 1, 28, 28)
    aug = BatchAugment()
    a = aug(x, torch.Generator().manual_seed(5))
    assert torch.equal(a, aug(x, torch.Generator().manual_seed(5)))
    assert not torch.equal(a, aug(x, torch.Generator().manual_seed(6)))
    assert a.shape == x.shape and a.dtype == x.dtype
    ident = BatchAugment(scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=False)(x, torch.Generator().manual_seed(0))
    assert torch.allclose(ident, x, atol=1e-5)
    flips = BatchAugment(scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=True)(x, torch.Generator().manual_seed(0))
    kinds = [torch.allclose(f, o, atol=1e-5) or torch.allclose(f, o.flip(-1), atol=1e-5) for f, o in zip(flips, x)]
    assert all(kinds) and any(not torch.allclose(f, o, atol=1e-5) for f, o in zip(flips, x))
    with pytest.raises(ValueError, match="float"):
        aug(torch.zeros(2, 1, 4, 4, dtype=torch.uint8))


# --- make_loader --------------------------------------------------------------------------------------------
class _NoItems(TensorDataset):
    def __getitem__(self, index):  # the bulk path must never come here
        raise AssertionError("per-sample __getitem__ called on an in-memory dataset")


class _Noisy(Dataset):
    """A file-backed stand-in: per-sample random 'augmentation' from torch's global RNG."""

    def __len__(self):
        return 10

    def __getitem__(self, i):
        return torch.full((2,), float(i)) + torch.rand(2), i


def _batches(loader):
    return [(x.clone(), y.clone()) for x, y in loader]


def test_make_loader_determinism_epochs_and_len():
    ds = _NoItems(torch.arange(50, dtype=torch.float32).view(50, 1), torch.arange(50))
    a = _batches(make_loader(ds, batch_size=8, shuffle=True, seed=1, epoch=0))
    b = _batches(make_loader(ds, batch_size=8, shuffle=True, seed=1, epoch=0))
    c = _batches(make_loader(ds, batch_size=8, shuffle=True, seed=1, epoch=1))
    assert all(torch.equal(x1, x2) for (x1, _), (x2, _) in zip(a, b))
    assert not torch.equal(torch.cat([x for x, _ in a]), torch.cat([x for x, _ in c]))
    assert sorted(torch.cat([y for _, y in a]).tolist()) == list(range(50))
    assert len(make_loader(ds, batch_size=8, shuffle=True)) == 7 == len(a)
    assert len(make_loader(ds, batch_size=8, shuffle=True, drop_last=True)) == 6
    plain = _batches(make_loader(Subset(ds, list(range(10, 20))), batch_size=4, shuffle=False))
    assert torch.cat([y for _, y in plain]).tolist() == list(range(10, 20))
    with pytest.raises(ValueError, match="rank=2"):
        make_loader(ds, batch_size=4, shuffle=True, rank=2, world_size=2)
    with pytest.raises(ValueError, match="batch_size=0"):
        make_loader(ds, batch_size=0, shuffle=True)


@pytest.mark.parametrize("in_memory,n", [(True, 40), (True, 43), (False, 10)])
def test_make_loader_ddp_shards_equal_single_process(in_memory, n):
    ds = _NoItems(torch.randn(n, 3), torch.arange(n)) if in_memory else _Noisy()
    assert len(ds) == n
    b = 4
    single = _batches(make_loader(ds, batch_size=2 * b, shuffle=True, seed=7, epoch=3))
    ranks = [_batches(make_loader(ds, batch_size=b, shuffle=True, seed=7, epoch=3, rank=r, world_size=2))
             for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == len(single) == -(-n // (2 * b))
    for k, (xs, ys) in enumerate(single):
        union_y = torch.cat([ranks[0][k][1], ranks[1][k][1]])
        assert sorted(union_y.tolist()) == sorted(ys.tolist())
        assert not set(ranks[0][k][1].tolist()) & set(ranks[1][k][1].tolist())
        if not in_memory:  # per-sample augmentation follows the image, whatever the sharding
            got = {int(y): x for y, x in zip(union_y, torch.cat([ranks[0][k][0], ranks[1][k][0]]))}
            assert all(torch.equal(got[int(y)], x) for x, y in zip(xs, ys))


def test_ddp_shards_repeat_images_only_where_a_rank_would_take_a_step_fewer():
    ds = _NoItems(torch.randn(41, 3), torch.arange(41))  # 41 = 5 global batches of 8 + 1: rank 1 has no 6th batch
    ranks = [_batches(make_loader(ds, batch_size=4, shuffle=True, seed=7, rank=r, world_size=2)) for r in range(2)]
    seen = torch.cat([y for rank in ranks for _, y in rank]).tolist()
    assert len(ranks[0]) == len(ranks[1]) == 6
    assert sorted(set(seen)) == list(range(41)) and len(seen) == 42  # one image twice: W - 1 at most


def test_make_loader_per_sample_augmentation_reproducible_with_workers():
    ds = _Noisy()
    a = _batches(make_loader(ds, batch_size=3, shuffle=True, seed=2, epoch=0))
    torch.manual_seed(123)  # the global RNG must not matter
    b = _batches(make_loader(ds, batch_size=3, shuffle=True, seed=2, epoch=0, num_workers=2))
    c = _batches(make_loader(ds, batch_size=3, shuffle=True, seed=2, epoch=1))
    assert all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b))
    assert not torch.equal(torch.cat([x for x, _ in a]).sort(0).values, torch.cat([x for x, _ in c]).sort(0).values)
    before = torch.get_rng_state()
    _batches(make_loader(ds, batch_size=3, shuffle=True, seed=2))
    assert torch.equal(before, torch.get_rng_state())  # the caller's RNG stream is untouched


def test_data_config_validation():
    with pytest.raises(ValueError, match="input_size"):
        load_dataset("digits", data_config={"mean": (0.5,), "std": (0.5,)})
    with pytest.raises(ValueError, match="interpolation"):
        load_dataset("digits", data_config={**GRAY, "interpolation": "magic"})
    with pytest.raises(ValueError, match="profile"):
        load_dataset("digits", profile="huge")
    with pytest.raises(ValueError, match="limit"):
        load_dataset("digits", limit=0)
