"""Fast numerics as recorded settings: precision (TF32 included) per profile, recompute off on a GPU by default, and the
one-time download step before shards start."""
from __future__ import annotations

import pytest
import torch

from adaptertune import RunConfig
from adaptertune.data import DatasetNotFoundError
from adaptertune.paper import protocols
from adaptertune.training.loop import set_numerics
from adaptertune.training.prepare import prepare_inputs
from adaptertune.training.run import recompute_share_on


@pytest.fixture(autouse=True)
def _restore_tf32():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.mark.parametrize("precision, autocast, tf32",
                         [("fp32", None, False), ("tf32", None, True), ("bf16", "bf16", True)])
def test_each_precision_sets_and_records_tf32_explicitly(precision, autocast, tf32):
    torch.backends.cudnn.allow_tf32 = not tf32  # whatever was set before, the run's precision decides
    assert set_numerics(precision) == {"precision": precision, "autocast": autocast, "tf32": tf32}
    assert torch.backends.cuda.matmul.allow_tf32 is tf32 and torch.backends.cudnn.allow_tf32 is tf32


def test_the_paper_profile_runs_bf16_and_fp32_is_one_variable_away(monkeypatch):
    monkeypatch.delenv(protocols.PRECISION_ENV, raising=False)
    paper = protocols.config("paper", "cifar10", "vit_small_patch16_224", "adapter")
    mini = protocols.config("mini", "digits", "mini-s", "adapter")
    assert paper.precision == "bf16" and mini.precision == "fp32"
    assert mini.run_id == mini.with_(precision=RunConfig.precision).run_id  # mini ids as before
    monkeypatch.setenv(protocols.PRECISION_ENV, "fp32")
    fp32 = protocols.config("paper", "cifar10", "vit_small_patch16_224", "adapter")
    assert fp32.precision == "fp32" and fp32.run_id != paper.run_id  # precision is part of what a run computes
    monkeypatch.setenv(protocols.PRECISION_ENV, "fp16")
    with pytest.raises(ValueError, match="fp16.*'fp32', 'tf32', 'bf16'"):
        protocols.config("paper", "cifar10", "vit_small_patch16_224", "adapter")


def test_recompute_is_a_cpu_default_only():
    cfg = RunConfig(dataset="digits", backbone="mini-s", method="adapter")
    assert recompute_share_on(cfg, torch.device("cpu")) == cfg.recompute_share > 0
    assert recompute_share_on(cfg, torch.device("cuda", 0)) == 0.0
    asked = cfg.with_(recompute_frozen_mlp=1.0)
    assert recompute_share_on(asked, torch.device("cuda", 0)) == 1.0
    assert asked.run_id == cfg.run_id


def test_prepare_fetches_nothing_for_mini_and_names_a_missing_paper_dataset_once(isolated_home):
    mini = RunConfig(dataset="digits", backbone="mini-s", method="head", profile="smoke")
    assert prepare_inputs([mini], say=lambda m: None) == []
    paper = RunConfig(dataset="cifar10", backbone="vit_small_patch16_224", method="head", profile="paper")
    for _ in range(2):  # the lock is released after a failure: a second caller does not hang
        with pytest.raises(DatasetNotFoundError, match="python -m adaptertune.data download cifar10"):
            prepare_inputs([paper], download=False, say=lambda m: None)


def test_deterministic_kernels_are_a_cuda_setting_and_leave_a_cpu_process_alone():
    from adaptertune.training.loop import deterministic_kernels

    before = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic
    assert deterministic_kernels(torch.device("cpu")) is False  # CPU kernels already repeat exactly
    assert (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic) == before
