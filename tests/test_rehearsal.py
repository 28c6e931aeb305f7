"""The paper-path rehearsal (``make rehearse``): hub cache entries timm really loads offline, the runs it plans are
the commands a GPU user types, and — slow — the whole rehearsal end to end."""
from __future__ import annotations

import huggingface_hub
import pytest
import timm
import torch
from huggingface_hub import constants as hub_constants
from safetensors.torch import load_file

import adaptertune as at
from adaptertune.backbones import PAPER_BACKBONES, PretrainedWeightsError, backbone_info, data_config
from adaptertune.cli import build_parser
from adaptertune.config import RunConfig
from adaptertune.paper import experiments
from adaptertune.regimes import methods
from benchmarks import rehearse
from benchmarks.hub_cache import hub_repo_id, write_hub_entry


@pytest.fixture()
def hub_cache(tmp_path, monkeypatch):
    """An empty offline hub cache for this process (huggingface_hub reads these constants at call time)."""
    cache = tmp_path / "hub"
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    return cache


def test_a_hub_entry_is_what_pretrained_true_loads_offline(hub_cache):
    with pytest.raises(PretrainedWeightsError, match="could not load pretrained weights"):
        at.create_backbone("deit-t16", 5)  # empty cache, offline: an error, never random weights
    weights = write_hub_entry("deit-t16", hub_cache)
    repo = next(iter(huggingface_hub.scan_cache_dir(hub_cache).repos))  # the hub's own reading of the layout
    assert repo.repo_id == hub_repo_id("deit-t16") == "timm/deit_tiny_patch16_224.fb_in1k"
    assert {f.file_name for r in repo.revisions for f in r.files} == {"model.safetensors", "config.json"}
    assert next(iter(repo.revisions)).refs == frozenset({"main"})

    model = at.create_backbone("deit-t16", 5)
    cached = load_file(str(weights))
    assert cached["head.weight"].shape == (1000, 192)  # the tag's own head, reset by timm for 5 classes
    state = model.state_dict()
    assert state["head.weight"].shape == (5, 192)
    assert all(torch.equal(state[k], v) for k, v in cached.items() if not k.startswith("head."))
    assert backbone_info(model)["source"] == "timm:timm/deit_tiny_patch16_224.fb_in1k"
    assert backbone_info(model)["tag"] == "fb_in1k" and backbone_info(model)["pretrained"] is True
    assert data_config(model)["mean"] == rehearse.EXPECTED_NORMALISATION["deit_tiny_patch16_224"][0]


def test_hub_repo_id_refuses_names_without_hub_weights():
    with pytest.raises(ValueError, match="no hub weights for 'mini-s'"):
        hub_repo_id("mini-s")


@pytest.mark.parametrize("name", sorted(PAPER_BACKBONES))
def test_each_pinned_tag_asks_for_the_normalisation_it_was_trained_with(name):
    """AugReg ViTs: mean = std = 0.5; DeiT: ImageNet statistics — what timm's config for the pinned tag says."""
    cfg = timm.models.get_pretrained_cfg(PAPER_BACKBONES[name])
    assert (tuple(cfg.mean), tuple(cfg.std)) == rehearse.EXPECTED_NORMALISATION[name]
    assert tuple(cfg.input_size) == (3, 224, 224)


def test_the_planned_runs_are_grid_runs_or_short_runs_of_every_backbone():
    runs = rehearse.planned_runs()
    main = {c.run_id for c in experiments.grid("main", "paper")}
    grid_runs = [c for c in runs if c.run_id in main]
    assert sorted(c.method for c in grid_runs) == sorted(methods(in_paper=True))
    assert {c.backbone for c in grid_runs} == {rehearse.GRID_BACKBONE}
    assert {c.backbone for c in runs} == set(PAPER_BACKBONES)
    assert all(c.profile == "paper" and c.dataset == rehearse.DATASET for c in runs)
    assert all(c.epochs == 1 and c.limit for c in runs if c.run_id not in main)


def test_the_cli_arguments_make_the_planned_run():
    """What the rehearsal types is what a GPU user types, and it lands on the same run_id."""
    fields = set(RunConfig.field_names())
    for cfg in rehearse.planned_runs():
        args = build_parser().parse_args(rehearse.cli_args(cfg))
        parsed = RunConfig.from_dict({k: v for k, v in vars(args).items() if k in fields})
        assert parsed.run_id == cfg.run_id, rehearse.cli_args(cfg)
    paper = experiments.config("paper", "pets", "deit_tiny_patch16_224", "adapter")
    assert rehearse.cli_args(paper) == ["run", "--dataset", "pets", "--backbone", "deit_tiny_patch16_224",
                                        "--method", "adapter", "--precision", "bf16", "--profile", "paper"]


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_rehearsal_end_to_end(tmp_path):
    """make rehearse: hub cache, fixture, paper-profile runs through the CLI, notebooks 01–05 through the suite."""
    report = rehearse.rehearse(tmp_path / "rehearsal", say=lambda message: None)
    assert report.ok, report.summary()
    names = [c.name for c in report.checks]
    for name in PAPER_BACKBONES:
        assert any(n.startswith(f"{name}/") and "exactly the cached weights" in n for n in names)
        assert any(n.startswith(f"{name}/") and "as the tag requires" in n for n in names)
    assert sum("no error output" in n for n in names) == len(rehearse.NOTEBOOK_STEMS)
