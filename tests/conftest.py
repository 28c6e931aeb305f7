"""Test-wide settings: never touch the network, never write into the repository's data/ or results/."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture()
def isolated_home(tmp_path, monkeypatch):
    """A throw-away project home: data/, results/ and backbones/ resolve under tmp_path."""
    monkeypatch.setenv("ADAPTERTUNE_HOME", str(tmp_path))
    monkeypatch.setenv("ADAPTERTUNE_RESULTS", str(tmp_path / "results"))
    return tmp_path
