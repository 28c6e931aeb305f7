"""The paper profile's in-memory path (issue #16): uint8 training tensor, seeded batches, crops on the device."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset
from torchvision import transforms as T

from adaptertune.config import RunConfig
from adaptertune.data import load_dataset, make_loader
from adaptertune.data import device_path
from adaptertune.data.device_augment import DeviceRandomResizedCrop
from adaptertune.data.loader import epoch_generator

import fixtures_data as fx

CFG = fx.PAPER_CFG


_write = fx.write_patched
_load = fx.load_paper


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "svhn", "tiny_imagenet"])
def test_in_memory_split_holds_the_pil_path_images(name, isolated_home, monkeypatch):
    root = isolated_home / "datasets"
    _write(name, root, monkeypatch)
    pil, dev = _load(name, root), _load(name, root, augment_on_device=True)
    assert pil.train_augment is None and isinstance(dev.train_augment, DeviceRandomResizedCrop)
    assert isinstance(dev.train, TensorDataset)
    images, labels = dev.train.tensors
    assert images.dtype == torch.uint8 and images.ndim == 4 and images.shape[1] == 3
    assert len(dev.train) == len(pil.train)
    source = pil.train.base  # Subset of the parsed source, in the training split's order
    for k in (0, len(source) - 1):
        image, label = source[k]
        assert torch.equal(images[k], torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1))
        assert int(labels[k]) == label
    for split in ("val", "test", "train_eval"):  # evaluation stays on the PIL path, image for image
        assert torch.equal(getattr(dev, split)[0][0], getattr(pil, split)[0][0])
    assert dev.info["data_path"]["train"] == device_path.TRAIN_PATH
    assert pil.info["data_path"]["train"] == device_path.PIL_PATH


def test_same_seed_same_crops(isolated_home, monkeypatch):
    root = isolated_home / "datasets"
    _write("cifar10", root, monkeypatch)
    s = _load("cifar10", root, augment_on_device=True)

    def epoch(seed: int) -> list[torch.Tensor]:
        gen = torch.Generator().manual_seed(seed)
        return [s.train_augment(x, gen) for x, _ in make_loader(s.train, batch_size=8, shuffle=True, seed=seed)]

    first, again, other = epoch(3), epoch(3), epoch(4)
    assert first[0].shape == (8, 3, 24, 24) and first[0].dtype == torch.float32
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], other[0])
    order = torch.randperm(len(s.train), generator=epoch_generator(3, 0))[:8]  # the loader's seeded order
    x, y = next(iter(make_loader(s.train, batch_size=8, shuffle=True, seed=3)))
    assert torch.equal(x, s.train.tensors[0][order]) and torch.equal(y, s.train.tensors[1][order])


def test_device_augment_is_a_recorded_setting_that_defaults_by_profile_and_set():
    paper = RunConfig(dataset="cifar10", backbone="deit_tiny_patch16_224", method="head", profile="paper")
    assert paper.resolved().augment_on_device is True and paper.semantic_dict()["augment_on_device"] is True
    assert paper.run_id == paper.with_(augment_on_device=True).run_id
    off = paper.with_(augment_on_device=False)
    assert off.run_id != paper.run_id and "augment_on_device" not in off.semantic_dict()
    for other in (paper.with_(dataset="pets"), paper.with_(augment=False),
                  RunConfig(dataset="digits", backbone="mini-s", method="head", profile="mini")):
        assert other.resolved().augment_on_device is False and "augment_on_device" not in other.semantic_dict()
    with pytest.raises(ValueError, match="augment_on_device=True is not allowed for dataset='pets'"):
        paper.with_(dataset="pets", augment_on_device=True)
    with pytest.raises(ValueError, match="augment_on_device=True is not allowed for dataset='digits'"):
        RunConfig(dataset="digits", backbone="mini-s", method="head", profile="mini", augment_on_device=True)
    with pytest.raises(ValueError, match="augment_on_device='yes'"):
        paper.with_(augment_on_device="yes")
    with pytest.raises(ValueError, match="augment_on_device=True is not allowed for 'pets'"):
        load_dataset("pets", profile="paper", augment_on_device=True)


def test_paper_run_on_cifar_trains_through_the_device_path(isolated_home, monkeypatch):
    from adaptertune.training.run import run

    root = isolated_home / "data" / "datasets"  # the default datasets root under the isolated home
    _write("cifar10", root, monkeypatch)
    monkeypatch.setenv("ADAPTERTUNE_DATASETS", str(root))
    calls = {"pil": 0, "device": 0}
    pil_forward, device_call = T.RandomResizedCrop.forward, DeviceRandomResizedCrop.__call__

    def counted_pil(self, img):
        calls["pil"] += 1
        return pil_forward(self, img)

    def counted_device(self, images, generator=None):
        calls["device"] += 1
        assert images.dtype == torch.uint8
        return device_call(self, images, generator)

    monkeypatch.setattr(T.RandomResizedCrop, "forward", counted_pil)
    monkeypatch.setattr(DeviceRandomResizedCrop, "__call__", counted_device)
    cfg = RunConfig(dataset="cifar10", backbone="deit_tiny_patch16_224", method="head", profile="paper",
                    pretrained=False, device="cpu", epochs=1, warmup_epochs=0, batch_size=16, train_eval_limit=8)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*partial copy.*")
        record = run(cfg, verbose=False)
    assert record["status"] == "finished" and record["config"]["augment_on_device"] is True
    assert calls == {"pil": 0, "device": 2}  # 27 training images in batches of 16; no PIL crop at all
    assert record["dataset"]["info"]["data_path"]["train"] == device_path.TRAIN_PATH
    assert record["metrics"]["train_images_per_s"] > 0
