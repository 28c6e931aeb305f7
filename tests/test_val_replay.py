"""The validation split decoded once per run (issue #16): later epochs replay the first pass's batches bit for bit."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Subset, TensorDataset

from adaptertune.data import make_loader
from adaptertune.data.transforms import paper_transforms
from adaptertune.data.val_replay import NOT_USED, Replay

CFG = {"input_size": (3, 24, 24), "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225), "crop_pct": 0.875,
       "interpolation": "bicubic"}


class _Photos(Dataset):
    """PIL images of several sizes through the paper's eval transform; counts how often an image is decoded."""

    def __init__(self, transform, n: int = 11) -> None:
        rng = np.random.default_rng(0)
        self.images = [Image.fromarray(rng.integers(0, 256, (30 + i, 40 - i, 3), dtype=np.uint8)) for i in range(n)]
        self.transform, self.decoded = transform, 0

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        self.decoded += 1
        return self.transform(self.images[i]), i % 3


def _passes(replay: Replay, dataset: Dataset, n: int = 3) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    """``n`` validation passes as ``evaluate`` makes them: a fresh strided Subset each time."""
    return [list(replay(Subset(dataset, list(range(len(dataset)))), batch_size=4, shuffle=False, seed=0, epoch=0,
                        drop_last=False, num_workers=0)) for _ in range(n)]


def test_later_passes_replay_the_first_bit_for_bit_without_decoding():
    data = _Photos(paper_transforms(CFG)[1])
    streamed = [list(make_loader(data, batch_size=4, shuffle=False))]
    replay = Replay(make_loader, CFG, torch.device("cpu"))
    assert replay.state == NOT_USED
    passes = _passes(replay, data)
    assert data.decoded == len(data) + len(data)  # the reference pass and the first replay pass; none after
    for batches in passes:
        assert len(batches) == len(streamed[0]) == 3
        for (x, y), (xs, ys) in zip(batches, streamed[0]):
            assert x.dtype == torch.float32 and torch.equal(x, xs) and torch.equal(y, ys)
    assert replay.state.startswith(f"kept {len(data)} images")


def test_a_transform_that_is_not_the_backbones_normalise_streams_every_pass():
    other = {**CFG, "mean": (0.5, 0.5, 0.5)}  # the transform normalises with other numbers than the Replay is told
    data = _Photos(paper_transforms(other)[1])
    replay = Replay(make_loader, CFG, torch.device("cpu"))
    passes = _passes(replay, data)
    assert data.decoded == 3 * len(data)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(passes[0], passes[2]))
    assert replay.state.startswith("off: a batch is not ToTensor + Normalize")


def test_over_the_limit_streams_and_says_why():
    data = _Photos(paper_transforms(CFG)[1])
    replay = Replay(make_loader, CFG, torch.device("cpu"), limit_bytes=1000)
    _passes(replay, data, 2)
    assert data.decoded == 2 * len(data)
    assert "11 images need" in replay.state and "over the 0.00 GiB limit" in replay.state


def test_in_memory_splits_and_other_splits_are_not_kept():
    x = torch.randint(0, 256, (10, 3, 24, 24), dtype=torch.uint8)
    replay = Replay(make_loader, CFG, torch.device("cpu"))
    _passes(replay, TensorDataset(x.float(), torch.zeros(10, dtype=torch.int64)), 1)
    assert replay.state.startswith("off: the split is held in memory") and replay.batches is None
    data, later = _Photos(paper_transforms(CFG)[1]), _Photos(paper_transforms(CFG)[1], n=5)
    replay = Replay(make_loader, CFG, torch.device("cpu"))
    _passes(replay, data, 1)
    _passes(replay, later, 2)  # another split through the same Replay: streamed, never served the first one's batches
    assert later.decoded == 2 * len(later) and replay.state.startswith("kept 11 images")


def test_a_run_with_replay_gives_the_streamed_runs_numbers(isolated_home, monkeypatch):
    from adaptertune.config import RunConfig
    from adaptertune.store import runs as run_store
    from adaptertune.training.run import run

    import fixtures_data as fx

    folder = fx.write_image_folder(isolated_home / "pics", per_class=12)
    cfg = RunConfig(dataset=str(folder), backbone="mini-s", method="adapter", profile="mini", epochs=3,
                    pretrained=False, warmup_epochs=1, batch_size=8, val_fraction=0.3, lr=1e-2)
    replayed = run(cfg, verbose=False)
    history = run_store.load_metrics(cfg.run_id)
    monkeypatch.setattr(Replay.__init__, "__defaults__", (0,))  # a limit of 0 bytes: every pass streams
    streamed = run(cfg, verbose=False, force=True)
    assert replayed["numerics"]["val_replay"].startswith("kept")
    assert streamed["numerics"]["val_replay"].startswith("off:")
    again = run_store.load_metrics(cfg.run_id)
    assert history["val_loss"].tolist() == again["val_loss"].tolist()
    assert replayed["metrics"]["test_acc"] == streamed["metrics"]["test_acc"]
