"""The tuned protocol's choice: the best last-epoch validation accuracy of the selection seed, ties to the smaller rate,
diverged candidates never chosen, nothing chosen while a candidate is unsettled; the test split plays no part."""
from __future__ import annotations

import dataclasses
import math

import pandas as pd
import pytest

from adaptertune.paper import protocols, tuning


def store(profile: str, dataset: str, backbone: str, regime: str, val: dict[float, float | str],
          test_acc: float = 0.5, others: float | None = 0.1) -> pd.DataFrame:
    """Settled rows for a cell's selection runs: a float val_acc = finished, "diverged"/"crashed" = failed; candidates
    ``val`` does not name finish at ``others`` (None: not run yet)."""
    rows = []
    for cfg in tuning.selection_configs(profile, dataset, backbone, regime):
        v = val.get(cfg.lr, others)
        if v is None:
            continue
        failed = isinstance(v, str)
        rows.append({"run_id": cfg.run_id, "status": "failed" if failed else "finished",
                     "error": ("NonFiniteLossError: loss nan" if v == "diverged" else "RuntimeError: boom") if failed else None,
                     "val_acc": math.nan if failed else v, "test_acc": test_acc})
    return pd.DataFrame(rows)


CELL = ("mini", "digits", "mini-s", "adapter")


def test_the_best_validation_accuracy_wins_ties_go_to_the_smaller_rate():
    runs = store(*CELL, {1e-3: 0.80, 3e-3: 0.90, 1e-2: 0.90, 3e-2: 0.70, 1e-1: 0.60})
    choice = tuning.choose(runs, *CELL)
    assert choice.lr == 3e-3 and choice.margin == pytest.approx(0.0) and not choice.at_grid_edge
    finals = tuning.final_configs(runs, *CELL)
    assert [c.seed for c in finals] == [0, 1, 2] and {c.lr for c in finals} == {3e-3}
    search = next(c for c in tuning.selection_configs(*CELL) if c.lr == 3e-3)
    assert finals[0].run_id == search.run_id  # the selection seed's final is its search run


def test_test_accuracy_plays_no_part():
    a = store(*CELL, {1e-3: 0.80, 3e-3: 0.90, 1e-2: 0.85, 3e-2: 0.70, 1e-1: 0.6}, test_acc=0.1)
    b = store(*CELL, {1e-3: 0.80, 3e-3: 0.90, 1e-2: 0.85, 3e-2: 0.70, 1e-1: 0.6}, test_acc=0.99)
    assert tuning.choose(a, *CELL).lr == tuning.choose(b, *CELL).lr == 3e-3


def test_pending_diverged_and_failed_candidates():
    assert tuning.choose(store(*CELL, {1e-3: 0.8, 3e-3: 0.9}, others=None), *CELL) is None  # others not run yet
    assert tuning.final_configs(store(*CELL, {1e-3: 0.8}, others=None), *CELL) == []
    assumed = tuning.choose(store(*CELL, {}, others=None), *CELL, assume=True)
    assert assumed.assumed and assumed.lr in tuning.candidates("mini", "adapter")
    diverged = tuning.choose(store(*CELL, {1e-3: 0.8, 3e-3: 0.9, 1e-2: 0.85, 3e-2: 0.7, 1e-1: "diverged"}), *CELL)
    assert diverged.lr == 3e-3 and math.isnan(diverged.val_acc[1e-1])
    assert tuning.choose(store(*CELL, {1e-3: 0.8, 3e-3: 0.9, 1e-2: 0.85, 3e-2: 0.7, 1e-1: "crashed"}), *CELL) is None
    with pytest.raises(ValueError, match="every candidate rate .* diverged"):
        tuning.choose(store(*CELL, {lr: "diverged" for lr in tuning.candidates("mini", "adapter")}), *CELL)


def test_scratch_searches_full_fine_tunings_grid_from_random_init():
    configs = tuning.selection_configs("mini", "digits", "mini-s", "scratch")
    assert [c.lr for c in configs] == list(tuning.candidates("mini", "full"))
    assert all(c.method == "full" and c.pretrained is False for c in configs)
    with pytest.raises(ValueError, match="unknown to the tuned protocol"):
        tuning.arm("ssf")


def test_selection_table_and_its_description():
    top = max(tuning.candidates("mini", "adapter"))
    runs = pd.concat([store(*CELL, {1e-3: 0.80, 3e-3: 0.82, 1e-2: 0.90, 3e-2: 0.91, top: 0.95}),
                      store("mini", "digits", "mini-s", "head", {1e-3: 0.5}, others=None)])
    table = tuning.selection_table(runs, "mini", [("digits", "mini-s", "adapter"), ("digits", "mini-s", "head")])
    chosen = table[table["chosen"]]
    assert len(chosen) == 1 and chosen["lr"].item() == top and chosen["at_grid_edge"].item()
    assert chosen["margin_points"].item() == pytest.approx(4.0)
    assert set(table["status"]) == {"finished", "pending"}
    text = tuning.describe_selection(table)
    assert f"adapter: chosen {top:g} ×1" in text and "at the edge of their grid" in text and "1 cell(s) still wait" in text


def test_a_dataset_chosen_over_several_seeds_reads_their_mean(monkeypatch):
    cell = ("fmnist_lowdata", "mini-s", "adapter")
    assert tuning.selection_seeds("mini", cell[0]) == (0,)  # mini validates lowdata on a larger split instead
    several = dataclasses.replace(protocols.PROTOCOLS["mini"], selection_seeds={cell[0]: (0, 1, 2)})
    monkeypatch.setitem(protocols.PROTOCOLS, "mini", several)
    seeds = tuning.selection_seeds("mini", cell[0])
    assert seeds == (0, 1, 2) and tuning.selection_seeds("mini", "digits") == (0,)
    configs = tuning.selection_configs("mini", *cell)
    lrs = tuning.candidates("mini", "adapter")
    assert [(c.lr, c.seed) for c in configs] == [(lr, s) for lr in lrs for s in seeds]
    # seed 0 alone would pick lrs[4] (diverged on seed 1: never chosen) or else lrs[1]; the mean picks lrs[2]
    val = {lr: (.5, .5, .5) for lr in lrs} | {lrs[1]: (.9, .6, .6), lrs[2]: (.8, .8, .8), lrs[3]: (.6, .6, .6),
                                              lrs[4]: (.99, float("nan"), .99)}
    rows = [{"run_id": c.run_id, "status": "failed" if val[c.lr][seeds.index(c.seed)] != val[c.lr][seeds.index(c.seed)]
             else "finished", "error": "NonFiniteLossError: loss nan", "val_acc": val[c.lr][seeds.index(c.seed)]}
            for c in configs]
    runs = pd.DataFrame(rows)
    choice = tuning.choose(runs, "mini", *cell)
    assert choice.lr == lrs[2] and choice.val_acc[lrs[1]] == pytest.approx(0.7) and math.isnan(choice.val_acc[lrs[4]])
    assert tuning.choose(runs.iloc[:-1], "mini", *cell) is None  # one seed of one rate unsettled: no choice yet
    finals = tuning.final_configs(runs, "mini", *cell, seeds=seeds)
    assert {c.run_id for c in finals} <= set(runs["run_id"])  # every seed at the chosen rate is a search run
