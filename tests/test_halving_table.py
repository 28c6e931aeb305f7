"""Successive halving against the full selection grid, computed from stored per-epoch histories: same rate, another
rate within the seed noise of the tuned runs, or better / worse beyond it; a one-seed cell is judged by its dataset's
pooled seed sd; unsettled cells are left out."""
from __future__ import annotations

import pandas as pd

from adaptertune.paper import halving, tuning
from adaptertune.store import runs as store

CELL = ("digits", "mini-s", "adapter")  # mini: 7 candidate rates, 10 epochs -> rungs 7@2, 2@10 (the budget's)


def _frame(histories: dict[float, list[float]], test: dict[float, float],
           seed_tests: tuple[float, ...], cell: tuple[str, str, str] = CELL) -> pd.DataFrame:
    rows = []
    for cfg in tuning.selection_configs("mini", *cell):
        h = histories[cfg.lr]
        rows.append({"run_id": cfg.run_id, "status": "finished", "val_acc": h[-1], "test_acc": test[cfg.lr]})
    runs = pd.DataFrame(rows)
    finals = tuning.final_configs(runs, "mini", *cell)
    rows += [{"run_id": c.run_id, "status": "finished", "val_acc": 0.5, "test_acc": t}
             for c, t in zip(finals[1:], seed_tests)]
    return pd.DataFrame(rows)


def _hist(early: float, late: float) -> list[float]:
    return [early] * 8 + [late] * 7


def _five(*pairs: tuple[float, float]) -> dict[float, list[float]]:
    """Histories of the grid's first five rates as given; any further rate starts and ends low."""
    lrs = tuning.candidates("mini", "adapter")
    return {lr: _hist(*pairs[k]) if k < len(pairs) else _hist(.05, .2) for k, lr in enumerate(lrs)}


def _tests(*values: float) -> dict[float, float]:
    lrs = tuning.candidates("mini", "adapter")
    return {lr: values[k] if k < len(values) else .2 for k, lr in enumerate(lrs)}


def test_same_rate_within_noise_and_outside():
    lrs = tuning.candidates("mini", "adapter")
    # halving drops 1e-1 (slow start) that the full grid would choose: a miss whose size decides the verdict
    hist = _five((.5, .6), (.7, .80), (.8, .85), (.6, .7), (.1, .86))
    test = _tests(.6, .8, .85, .7, .86)
    near = halving.halving_table({CELL: hist}, _frame(hist, test, (.85, .87)), "mini").iloc[0]
    assert near.grid_lr == lrs[4] and near.halving_lr == lrs[2] and near.verdict == "within seed noise"
    n = len(lrs)
    assert near.rungs == f"{n}@2 → 2@10" and abs(near.cost_runs - (2 * n + 2 * 8) / 10) < 1e-9
    assert near.noise_from == "cell (3 seeds)"
    far = halving.halving_table({CELL: hist}, _frame(hist, {**test, lrs[4]: .95}, (.951, .952)), "mini").iloc[0]
    assert far.verdict == "worse, beyond the noise" and far.test_diff_points < -5
    better = halving.halving_table({CELL: hist}, _frame(hist, {**test, lrs[2]: .95}, (.851, .852)), "mini").iloc[0]
    assert better.verdict == "better, beyond the noise" and better.test_diff_points > 5
    hist[lrs[4]] = _hist(.1, .84)  # now the grid also picks 1e-2
    same = halving.halving_table({CELL: hist}, _frame(hist, test, (.85, .87)), "mini").iloc[0]
    assert same.verdict == "same rate" and same.test_diff_points == 0.0
    text = halving.describe_halving(pd.DataFrame([near, far, same]))
    assert "1/3 cells" in text and "Missed: digits/mini-s/adapter" in text
    assert "a worse one beyond the noise on 1" in text


def test_a_one_seed_cell_is_judged_by_its_datasets_pooled_sd():
    hist = _five((.5, .6), (.7, .80), (.8, .85), (.6, .7), (.1, .86))
    test = _tests(.6, .8, .85, .7, .86)
    other = ("digits", "mini-b", "adapter")
    runs = pd.concat([_frame(hist, test, (.84, .88)), _frame(hist, test, (), other)])  # other: one seed only
    table = halving.halving_table({CELL: hist, other: hist}, runs, "mini").set_index("backbone")
    sd = table.loc["mini-s", "seed_sd_points"]
    assert table.loc["mini-b", "seed_sd_points"] == sd
    assert table.loc["mini-b", "noise_from"] == "pooled (1 digits cells)"
    assert table.loc["mini-b", "verdict"] == ("within seed noise" if 1.0 <= sd else "worse, beyond the noise")


def test_histories_are_read_from_the_store_and_unsettled_cells_skipped(tmp_path):
    lrs = tuning.candidates("mini", "adapter")
    rows = []
    for i, cfg in enumerate(tuning.selection_configs("mini", *CELL)):
        store.write_json(store.run_path(cfg.run_id, tmp_path) / "config.json", cfg.resolved().to_dict())
        store.write_jsonl(store.run_path(cfg.run_id, tmp_path) / "metrics.jsonl",
                          [{"epoch": e + 1, "val_acc": 0.1 * i + 0.01 * e} for e in range(10)])
        rows.append({"run_id": cfg.run_id, "status": "finished", "error": None})
    rows[-1] = {**rows[-1], "status": "failed", "error": "NonFiniteLossError: loss nan"}
    got = halving.selection_histories(pd.DataFrame(rows), "mini", [CELL, ("digits", "mini-b", "adapter")], tmp_path)
    assert list(got) == [CELL] and got[CELL][lrs[-1]] == [] and got[CELL][lrs[0]][:2] == [0.0, 0.01]


def test_the_proxy_rule_is_judged_from_its_proxy_runs_and_its_wall_time_kept_out_of_the_table(tmp_path):
    lrs = tuning.candidates("mini", "adapter")
    hist = _five((.5, .6), (.7, .80), (.8, .85), (.6, .7), (.1, .86))  # the prefix rule drops lrs[4] early
    runs = _frame(hist, _tests(.6, .8, .85, .7, .86), (.85, .87)).assign(wall_s=10.0)
    proxy_rows = [{"run_id": p.run_id, "status": "finished", "val_acc": v, "test_acc": None, "wall_s": 1.0}
                  for p, v in zip(halving.proxy_configs(tuning.search_configs("mini", *CELL)),
                                  (.3, .5, .7, .6, .75, .2, .1))]  # proxies score lrs[4] after its decay: a finalist
    with_proxies = pd.concat([runs, pd.DataFrame(proxy_rows)], ignore_index=True)
    scores = halving.proxy_scores(with_proxies, "mini", [CELL, ("digits", "mini-b", "adapter")])
    assert list(scores) == [CELL] and scores[CELL][lrs[4]] == (.75, 1.0)  # the other cell has no proxy runs
    row = halving.halving_table({CELL: hist}, with_proxies, "mini", scores).iloc[0]
    assert row.halving_lr == lrs[2] and row.proxy_lr == lrs[4] == row.grid_lr and row.proxy_verdict == "same rate"
    assert row.proxy_cost_runs == (7 * 2 + 2 * 10) / 10  # 7 two-epoch proxies, two full finalists
    assert not [c for c in row.index if "wall" in c]  # a measured time would make the table differ on every pass
    for cfg in tuning.search_configs("mini", *CELL):  # the wall time is read from the store, beside store_time
        store.write_json(store.run_path(cfg.run_id, tmp_path) / "config.json", cfg.resolved().to_dict())
        store.write_jsonl(store.run_path(cfg.run_id, tmp_path) / "metrics.jsonl",
                          [{"epoch": e + 1, "val_acc": v} for e, v in enumerate(hist[cfg.lr])])
    wall = halving.proxy_wall(with_proxies, "mini", [CELL, ("digits", "mini-b", "adapter")], tmp_path)
    assert wall.to_dict() == {CELL: (7 * 1.0 + 2 * 10.0) / 10.0 - 1}  # 7 proxies, the losing finalist, over the winner
    assert "median 1.70, range 1.70; 0 cell(s) over the budget of 2.5" in halving.describe_proxy_wall(wall)
    assert halving.describe_proxy_wall(wall.iloc[:0]) == ""
    plain = halving.halving_table({CELL: hist}, runs, "mini").iloc[0]
    assert plain.proxy_verdict == halving.NOT_RUN
    text = halving.describe_halving(pd.DataFrame([row]))
    assert "Proxy rule (what `fit` uses)**, on the 1 main cells" in text and "the grid's rate on 1/1" in text
    assert "Proxy rule" not in halving.describe_halving(pd.DataFrame([plain]))
