"""Run grids per profile: shared runs, protocol facts, selection, plans, what the notebooks load."""

import matplotlib

matplotlib.use("Agg")

from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from adaptertune.paper import experiments  # noqa: E402


def test_grids_share_runs_and_match_the_protocol():
    main = experiments.grid("main", "mini")
    assert len(main) == 2 * 3 * 3 * 3
    # seed s of the main comparison trains on pretraining replicate s: n over seeds counts pretraining runs
    assert {(c.seed, c.backbone) for c in main if c.backbone.startswith("mini-s")} == {
        (0, "mini-s"), (1, "mini-s.p1"), (2, "mini-s.p2")}
    # mini ablations wait for the adapter's tuned rate; nothing is known before the selection runs settle
    assert experiments.grid("rank", "mini") == [] and experiments.grid("init", "mini") == []
    total = experiments.all_configs("mini")
    assert len({c.run_id for c in total}) == len(total)
    paper = experiments.grid("main", "paper")
    assert len(paper) == 135 and {c.epochs for c in paper} == {50} and {c.lr for c in paper} == {1e-3}
    assert {c.batch_size for c in paper} == {128} and {c.warmup_epochs for c in paper} == {5}
    assert {c.backbone for c in paper} == set(experiments.PAPER_BACKBONES)  # no replicates of hub checkpoints
    assert len(experiments.grid("extended", "paper")) == 108 and experiments.grid("extended", "mini") == []
    placement = experiments.grid("placement", "paper")
    assert {(c.every, c.start) for c in placement} == {(1, 0), (2, 0), (1, 6), (2, 6)}
    assert {c.dataset for c in experiments.grid("rank", "paper")} == {"cifar10"}
    assert {c.lr for c in experiments.grid("rank", "paper")} == {1e-3}  # the paper profile ablates at its recipe
    smoke = experiments.all_configs("smoke")
    assert {c.epochs for c in smoke} == {1} and {c.seed for c in smoke} == {0} and {c.limit for c in smoke} == {64}


def _settle(configs, score) -> None:
    from adaptertune import store

    for cfg in configs:
        store.write_json(store.run_path(cfg.run_id) / "result.json",
                         {"run_id": cfg.run_id, "status": "finished", "config": cfg.resolved().to_dict(),
                          "metrics": {"val_acc": score(cfg), "test_acc": 0.5}})


def test_mini_ablations_run_at_the_tuned_rate_on_replicates_and_base(isolated_home):
    # the middle candidate wins every cell: 1e-2 for the adapter, 3e-2 for head-only, 1e-3 for full FT
    _settle(experiments.grid("selection", "mini"), lambda c: -abs(__import__("math").log10(c.lr) + 2))
    settled = experiments.settled_runs()
    tuned = experiments.grid("tuned", "mini", settled)
    assert {(c.backbone, c.seed) for c in tuned if c.backbone.startswith("mini-b")} == {
        ("mini-b", 0), ("mini-b.p1", 1), ("mini-b.p2", 2)}
    seeds = experiments.grid("seeds", "mini", settled)  # the same cells on the base backbone: between-seed spread
    assert {(c.backbone, c.seed) for c in seeds} == {(b, s) for b in ("mini-s", "mini-b") for s in (1, 2)}
    assert len(seeds) == 2 * 3 * 3 * 2
    rank = [c for c in experiments.grid("rank", "mini", settled) if c.method == "adapter"]
    on_pair = lambda d, b: sorted({c.rank for c in rank if (c.dataset, c.backbone) == (d, b)})  # noqa: E731
    assert on_pair("fmnist_target", "mini-s") == [1, 2, 4, 8, 16, 32, 64]  # the ablation pair: every rank
    assert on_pair("digits", "mini-b") == [1, 4, 16, 64]  # every other pair: the profile's pair ranks
    assert {c.lr for c in rank} == {1e-2} and {c.seed for c in rank} == {0, 1, 2}
    shared = {c.run_id for c in rank} & {c.run_id for c in seeds + tuned}
    assert len(shared) == 6 * 3  # r=16 at the tuned rate = the tuned seed-0 run and the base-backbone seeds
    init = experiments.grid("init", "mini", settled)
    assert {(c.init, c.init_std) for c in init} == {("zero", 1e-4), ("random", 1e-4), ("random", 1e-2)}
    assert len(init) == 3 * 8
    lrs = sorted({c.lr for c in experiments.grid("sensitivity", "mini", settled)})
    assert lrs == [0.00333, 0.01, 0.03]  # a third of, at and three times the tuned rate
    assert experiments.sensitivity_defaults("mini", settled)["lr"] == 1e-2
    assert {c.lr for c in experiments.grid("placement", "mini", settled)} == {1e-2}


def test_tuned_grids_grow_as_the_selection_settles(isolated_home):
    from adaptertune import store
    from adaptertune.paper import tuning

    assert experiments.grid("tuned", "smoke") == [] and experiments.pending_cells("tuned", "smoke", pd.DataFrame(
        columns=["run_id", "status", "val_acc", "error"])) == 5  # the paper's three regimes, LoRA and BitFit
    selection = experiments.grid("selection", "smoke")
    assert len(selection) == 2 * 5 + 2 + 2 * 3  # two rates per tuned regime, from scratch, and the dose's own searches
    for cfg in selection:  # settle every candidate: the larger rate wins everywhere
        store.write_json(store.run_path(cfg.run_id) / "result.json",
                         {"run_id": cfg.run_id, "status": "finished", "config": cfg.resolved().to_dict(),
                          "metrics": {"val_acc": cfg.lr, "test_acc": 0.5}})
    settled = experiments.settled_runs()
    tuned = experiments.grid("tuned", "smoke", settled)
    assert {(c.method, c.lr) for c in tuned} == {("head", 1e-2), ("adapter", 1e-2), ("full", 1e-3), ("lora", 1e-2),
                                                 ("bitfit", 1e-2)}
    assert experiments.pending_cells("tuned", "smoke", settled) == 0
    budget = experiments.grid("budget", "smoke", settled)
    assert [(c.rank, c.lr) for c in budget] == [(experiments.budget_rank("smoke", "mini-s"), 1e-2)]
    dose = experiments.grid("dose", "smoke", settled)  # every dose backbone at its own chosen rate
    assert {(c.backbone, c.method, c.pretrained, c.lr) for c in dose} == {("mini-s.e1", "adapter", True, 1e-2),
                                                                           ("mini-s.e1", "full", True, 1e-3),
                                                                           ("mini-s", "adapter", False, 1e-2)}
    assert [c.pretrained for c in experiments.grid("scratch", "smoke", settled)] == [False]
    assert tuning.choose(settled, "smoke", "fmnist_target", "mini-s", "scratch").lr == 1e-3
    grid = experiments.load_grid("smoke", "tuned", "selection")
    assert grid.pending == 0 and len(grid.select("tuned")) == 5  # each final (one seed) is its selection run


def test_budget_rank_is_the_papers_relative_rank():
    assert experiments.budget_rank("mini", "mini-s") == 3 and experiments.budget_rank("mini", "mini-b") == 5
    with pytest.raises(ValueError, match="no relative-budget control"):
        experiments.budget_rank("paper", "vit_small_patch16_224")


def test_plan_projects_the_tuned_runs():
    plan = experiments.plan("mini")
    assert plan["run_id"].is_unique and plan["projected"].sum() > 0
    assert set(plan.loc[~plan["projected"], "run_id"]) == {c.run_id for c in experiments.all_configs("mini")}


def test_multitask_grid_is_one_start_half_adapter_run_per_dataset():
    placement = {c.run_id for c in experiments.grid("placement", "mini")}
    tasks = experiments.grid("multitask", "mini")
    assert [c.dataset for c in tasks] == ["fmnist_target", "fmnist_lowdata", "digits"]
    assert {(c.backbone, c.method, c.start, c.every, c.rank, c.seed) for c in tasks} == {("mini-s", "adapter", 3, 1, 16, 0)}
    assert not any(c.run_id in placement for c in tasks)  # placement runs at the tuned rate, the tasks at the recipe's
    assert len(experiments.all_configs("mini")) == len(experiments.all_configs("mini", experiments.GRIDS[:-1])) + 3
    assert [(c.dataset, c.start) for c in experiments.grid("multitask", "smoke")] == [("fmnist_target", 3)]
    assert {c.start for c in experiments.grid("multitask", "paper")} == {6} and len(experiments.grid("multitask", "paper")) == 5


@pytest.mark.parametrize("profile", ["smoke", "mini", "paper"])
def test_each_grid_record_waits_for_exactly_the_choices_it_needs(profile):
    """A grid's two facts agree: it says it waits (pending cells on an empty store) exactly when its runs grow once
    the pending choices are filled in, so `load_grid` never calls an incomplete grid complete."""
    from adaptertune.paper import grids

    empty = pd.DataFrame(columns=["run_id", "status", "val_acc", "error"])
    assert tuple(grids.GRID_RECORDS) == experiments.GRIDS and all(g.serves for g in grids.GRID_RECORDS.values())
    for name in experiments.GRIDS:
        known, planned = experiments.grid(name, profile, empty), experiments.grid(name, profile, empty, assume_pending=True)
        waiting = experiments.pending_cells(name, profile, empty)
        assert (len(planned) > len(known)) == (waiting > 0), (name, len(known), len(planned), waiting)


def test_grid_errors_name_the_allowed_values():
    with pytest.raises(ValueError, match="choose one of"):
        experiments.grid("nope", "mini")
    with pytest.raises(ValueError, match="profile"):
        experiments.grid("main", "huge")


def test_select_and_plan():
    ids = [c.run_id for c in experiments.grid("init", "smoke")]
    frame = pd.DataFrame({"run_id": ids + ["other"], "test_acc": [0.5] * (len(ids) + 1)})
    assert len(experiments.select(frame, "init", "smoke")) == len(ids)
    plan = experiments.plan("smoke")
    assert plan["run_id"].is_unique and (~plan["projected"]).sum() == len(experiments.all_configs("smoke"))
    assert "main" in plan.loc[plan["method"] == "full", "grids"].iloc[0]
    assert experiments.sensitivity_defaults("paper") == {"lr": 1e-3, "weight_decay": 0.05, "scale": 1.0}


def test_load_grid_lists_missing_runs_and_the_command(isolated_home):
    from adaptertune import store

    grid = experiments.load_grid("smoke", "main")
    assert not grid.complete and len(grid.runs) == 0 and len(grid.missing) == len(experiments.grid("main", "smoke"))
    assert "3 of 3 known runs of grid(s) main (smoke) are missing" in grid.note()
    assert "python -m adaptertune.paper.suite --profile smoke" in grid._repr_markdown_()
    done = experiments.grid("main", "smoke")[0]
    store.write_json(store.run_path(done.run_id) / "result.json",
                     {"run_id": done.run_id, "status": "finished", "config": done.resolved().to_dict(),
                      "metrics": {"test_acc": 0.5}})
    grid = experiments.load_grid("smoke", "main")
    assert list(grid.runs["run_id"]) == [done.run_id] and [c.run_id for c in grid.missing] != [done.run_id]
    assert len(grid.select("main")) == 1
    with pytest.raises(ValueError, match="was not loaded"):
        grid.select("rank")
    assert experiments.make_command("paper", ("main", "rank")) == \
        "python -m adaptertune sweep --profile paper --grid main --grid rank"


def test_pick_runs_maps_one_run_per_key():
    frame = pd.DataFrame({"dataset": ["a", "b", "b"], "seed": [0, 0, 1], "run_id": ["r1", "r2", "r3"]})
    assert experiments.pick_runs(frame, "dataset", seed=0) == {"a": "r1", "b": "r2"}
    with pytest.raises(LookupError, match="several finished runs"):
        experiments.pick_runs(frame, "dataset")


def test_cli_sweep_runs_a_built_in_grid(isolated_home, capsys):
    from adaptertune.cli import main

    assert main(["sweep", "--grid", "init", "--profile", "smoke", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert all(c.run_id in out for c in experiments.grid("init", "smoke"))
    assert main(["sweep", "--grid", "nope", "--dry-run"]) == 2
    assert "grid name 'nope' is unknown" in capsys.readouterr().err
    assert main(["sweep"]) == 2


def test_longer_grid_repeats_the_tuned_cells_at_three_times_the_epochs_on_replicates():
    c = experiments.protocol("mini").controls
    longer = experiments.grid("longer", "mini", assume_pending=True)
    p = experiments.protocol("mini")
    assert c.longer_regimes == ("adapter", "full")  # the regimes claims 3 and 5 compare; head-only is not trained
    assert len(longer) == len(p.backbones) * len(c.longer_datasets) * len(c.longer_regimes) * len(p.seeds)
    assert {cfg.method for cfg in longer} == set(c.longer_regimes)
    for cfg in longer:
        assert cfg.epochs == c.longer_factor * experiments.recipe("mini", cfg.dataset)["epochs"]
        assert cfg.backbone == experiments.seated("mini", cfg.backbone.split(".")[0], cfg.seed)  # seed s: replicate s
    assert experiments.pending_cells("longer", "mini", experiments.settled_runs(Path("/nonexistent"))) == \
        len(p.backbones) * len(c.longer_datasets) * len(c.longer_regimes)
    assert experiments.grid("longer", "smoke") == []


def test_matched_grid_takes_the_snapshot_nearest_the_larger_backbones_source_accuracy():
    from adaptertune.paper.controls import source_accuracy

    c = experiments.protocol("mini").controls
    chosen = experiments.matched_backbone("mini")
    gaps = {b: abs(source_accuracy(b, "mini") - source_accuracy(c.matched_to, "mini")) for b in c.matched_candidates}
    assert chosen in c.matched_candidates and gaps[chosen] == min(gaps.values())
    grid = experiments.grid("matched", "mini", assume_pending=True)
    assert {cfg.backbone for cfg in grid} == {chosen} and len(grid) == 3 * 3 * 3  # datasets x regimes x seeds
    assert experiments.matched_backbone("paper") is None and experiments.grid("matched", "paper") == []
