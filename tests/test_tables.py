"""Tables as pure functions of small hand-made results frames."""
import math

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from adaptertune.paper import experiments, tables  # noqa: E402
from frames import MAIN  # noqa: E402


def test_seed_summary_exact_mean_and_sample_std():
    summary = tables.seed_summary(MAIN, ["dataset", "backbone", "method"]).set_index(["dataset", "backbone", "method"])
    row = summary.loc[("a", "s", "adapter")]
    assert row["mean"] == pytest.approx(0.82) and row["std"] == pytest.approx(0.02) and row["n"] == 3
    assert summary.loc[("a", "s", "full"), "std"] == pytest.approx(0.0)
    single = tables.seed_summary(MAIN.iloc[:1], ["dataset"])
    assert math.isnan(single["std"].item()) and single["n"].item() == 1


def test_pm_formats_points_and_single_seeds():
    assert tables.pm(0.82, 0.02, 3) == "82.00 ± 2.00"
    assert tables.pm(0.5, float("nan"), 1) == "50.00 (n=1)"
    assert tables.pm(float("nan"), 0.0, 0) == "—"


def test_main_table_layout_and_cells():
    table = tables.main_table(MAIN, datasets=["a", "b"])
    assert list(table.columns) == ["a", "b"]
    assert table.index.names == ["backbone", "regime"]
    assert list(table.index) == [("s", "Head-only"), ("s", "AdapterTune"), ("s", "Full FT"),
                                 ("t", "Head-only"), ("t", "AdapterTune"), ("t", "Full FT")]
    assert table.loc[("s", "AdapterTune"), "a"] == "82.00 ± 2.00"
    assert table.loc[("t", "Full FT"), "b"] == "—"  # pair not run


def test_win_loss_counts_and_ties():
    assert tables.win_loss(MAIN, "adapter", "full") == {"wins": 1, "losses": 1, "ties": 1, "pairs": 3}
    assert tables.win_loss(MAIN, "adapter", "head") == {"wins": 3, "losses": 0, "ties": 0, "pairs": 3}
    assert tables.win_loss(MAIN, "adapter", "full", tol=0.2) == {"wins": 0, "losses": 1, "ties": 2, "pairs": 3}
    cmp = tables.compare(MAIN, "adapter", "full").set_index(["dataset", "backbone"])
    assert cmp.loc[("b", "s"), "diff_points"] == pytest.approx(-32.0)


def test_gain_over_head_points():
    gains = tables.gain_table(MAIN).set_index(["dataset", "backbone"])["gain_over_head_points"]
    assert gains.to_dict() == pytest.approx({("a", "s"): 30.0, ("b", "s"): 20.0, ("a", "t"): 5.0})


def test_generalisation_gap_per_regime():
    table = tables.gap_table(tables.generalisation_gap(MAIN))
    assert list(table["regime"]) == ["Head-only", "AdapterTune", "Full FT"]
    by_protocol = tables.gap_table(tables.generalisation_gap(tables.stack({"p": MAIN, "q": MAIN})))
    assert list(by_protocol["protocol"]) == ["p"] * 3 + ["q"] * 3
    # train_eval_acc = test_acc + 0.1, capped at 1.0 (full FT on b/s: gaps 10, 8, 6)
    assert table["gap_mean_points"].to_numpy() == pytest.approx([10.0, 10.0, 84 / 9])
    assert (table["runs"] == 9).all()


def test_rank_table():
    runs = pd.DataFrame([{"method": "adapter", "rank": r, "seed": s, "test_acc": acc, "trainable_params": 10 * r}
                         for r, accs in {1: [0.6, 0.62], 4: [0.7, 0.7], 16: [0.795, 0.805], 64: [0.8, 0.8]}.items()
                         for s, acc in enumerate(accs)])
    runs = pd.concat([runs, pd.DataFrame([{"method": "head", "rank": None, "seed": 0, "test_acc": 0.1}])])
    table = tables.rank_table(runs)
    assert table["rank"].tolist() == [1, 4, 16, 64] and table["seeds"].tolist() == [2, 2, 2, 2]
    assert table["mean_points"].tolist() == pytest.approx([61.0, 70.0, 80.0, 80.0])
    assert table["trainable_params"].tolist() == [10, 40, 160, 640]


def test_init_table_std():
    arms = {("zero", 1e-4): [0.80, 0.82], ("random", 1e-4): [0.70, 0.96], ("random", 1e-2): [0.5, 0.6]}
    runs = pd.DataFrame([{"method": "adapter", "init": i, "init_std": std, "seed": s, "test_acc": a}
                         for (i, std), accs in arms.items() for s, a in enumerate(accs)])
    table = tables.init_table(runs)
    assert len(table) == 3 and table.loc[table["init"] == "zero", "init_std"].isna().all()  # zero init has no sigma
    table = table.set_index(["init", "init_std"])
    assert table.loc[("zero", np.nan), "std_points"].item() == pytest.approx(100 * np.std([0.80, 0.82], ddof=1))
    assert table.loc[("random", 1e-4), "mean_points"] == pytest.approx(83.0)
    assert table.loc[("random", 1e-2), "mean_points"] == pytest.approx(55.0)


def test_placement_table():
    rows = []
    for (every, start), (acc, params, speed) in {(1, 0): (0.8, 100, 50.0), (2, 0): (0.79, 50, 60.0),
                                                 (1, 3): (0.7, 50, 100.0)}.items():
        rows += [{"method": "adapter", "every": every, "start": start, "seed": s, "test_acc": acc,
                  "trainable_params": params, "train_images_per_s": speed, "wall_s": 1.0} for s in range(2)]
    runs = pd.DataFrame(rows)
    table = tables.placement_table(runs)
    assert len(table) == 3 and set(table.columns) >= {"every", "start", "test_acc", "trainable_params"}
    assert not {"train_images_per_s", "wall_s"} & set(table.columns)  # measured speed would not reproduce


def test_sensitivity_table_picks_one_knob_at_a_time():
    defaults = {"lr": 1e-3, "weight_decay": 0.05, "scale": 1.0}
    grid = [(1e-3, 0.05, 1.0, 0.8), (3e-3, 0.05, 1.0, 0.7), (1e-3, 0.0, 1.0, 0.75), (1e-3, 0.05, 4.0, 0.6),
            (3e-3, 0.0, 4.0, 0.1)]  # the last varies two knobs: in no block
    runs = pd.DataFrame([{"method": "adapter", "seed": 0, "lr": lr, "weight_decay": wd, "scale": sc, "test_acc": a}
                         for lr, wd, sc, a in grid])
    table = tables.sensitivity_table(runs, defaults)
    assert table.groupby("knob").size().to_dict() == {"lr": 2, "weight_decay": 2, "scale": 2}
    assert table[(table["knob"] == "scale") & (table["value"] == 4.0)]["mean_points"].item() == pytest.approx(60.0)


def test_param_fractions_reproduce_the_paper_mean():
    # PAPER.md's backbone sizes without head; depth and width come from the backbone registry, classes from the data one
    params = pd.DataFrame({"backbone": ["vit_small_patch16_224", "vit_base_patch16_224", "deit_tiny_patch16_224"],
                           "backbone_params": [21_665_664, 85_798_656, 5_524_416]})
    table = tables.core_pair_fractions(params, experiments.PAPER_CORE)
    assert len(table) == 15 and list(table["classes"][:5]) == [10, 100, 10, 37, 101]
    assert table["pct_of_full_ft"].mean() == pytest.approx(0.917, abs=5e-4)
    assert table["pct_of_backbone"].mean() == pytest.approx(0.918, abs=5e-4)
    s100 = table[(table["backbone"] == "vit_small_patch16_224") & (table["dataset"] == "cifar100")]
    assert s100["trainable"].item() == 190_756


def test_with_full_ft_fraction():
    params = pd.DataFrame([
        {"backbone": "x", "method": "head", "num_classes": 10, "trainable": 110, "total": 1110, "backbone_params": 1000},
        {"backbone": "x", "method": "adapter", "num_classes": 10, "trainable": 210, "total": 1210, "backbone_params": 1000},
        {"backbone": "x", "method": "full", "num_classes": 10, "trainable": 1110, "total": 1110, "backbone_params": 1000},
    ])
    out = tables.with_full_ft_fraction(params)
    assert out["pct_of_full_ft"].tolist() == pytest.approx([100 * 110 / 1110, 100 * 210 / 1110, 100.0])


def test_write_table_files(tmp_path):
    table = tables.main_table(MAIN)
    paths = tables.write_table(table, "tab2_main", "mini", caption="Main results", out_dir=tmp_path)
    assert {p.name for p in paths.values()} == {"tab2_main.csv", "tab2_main.md", "tab2_main.tex"}
    back = pd.read_csv(paths["csv"])
    assert list(back.columns[:2]) == ["backbone", "regime"] and len(back) == 6
    assert "82.00 ± 2.00" in paths["md"].read_text() and "\\caption{Main results}" in paths["tex"].read_text()
    smoke = tables.write_table(table, "t", "smoke", out_dir=tmp_path / "s")
    assert "SMOKE" in smoke["md"].read_text() and "SMOKE" in smoke["tex"].read_text()
    with pytest.raises(ValueError, match="table name"):
        tables.write_table(table, "a/b", "mini", out_dir=tmp_path)


def test_write_table_default_location(isolated_home):
    paths = tables.write_table(tables.gap_table(tables.generalisation_gap(MAIN)), "tabx", "mini")
    assert paths["csv"] == isolated_home / "figures" / "tables" / "mini" / "tabx.csv" and paths["csv"].is_file()


def test_main_table_by_protocol_marks_missing_cells_and_odd_n():
    tuned = MAIN[~((MAIN["dataset"] == "a") & (MAIN["backbone"] == "t") & (MAIN["seed"] == 2))]
    table = tables.main_table_by_protocol({"paper-recipe": MAIN, "tuned": tuned}, ["a", "b"], ["s", "t"], 3)
    assert list(table.columns) == ["a · paper-recipe", "a · tuned", "b · paper-recipe", "b · tuned"]
    assert table.loc[("t", "AdapterTune"), "a · tuned"] == "35.00 ± 0.00 (n=2)"
    assert table.loc[("t", "AdapterTune"), "a · paper-recipe"] == "35.00 ± 0.00"
    assert table.loc[("t", "Full FT"), "b · tuned"] == "—"


def test_pair_differences_are_paired_over_seeds():
    table = tables.pair_difference_table({"tuned": MAIN}, "adapter", "full")
    row = table[(table["dataset"] == "b")].iloc[0]
    assert row["adapter_minus_full_points"] == pytest.approx(-32.0) and row["outcome"] == "Full FT ahead"
    assert row["high"] == pytest.approx(-32.0 + 4.3027 * 2 / 3 ** 0.5, abs=1e-2)


def test_selection_file_keeps_small_learning_rates(tmp_path):
    tb = tables
    selection = pd.DataFrame({"lr": [1e-4, 3e-4, 1e-2], "val_acc": [81.23456, 82.0, 80.0],
                              "chosen": [False, True, False], "margin_points": [float("nan"), 0.12345, float("nan")],
                              "at_grid_edge": [False, False, True]})
    out = tb.round_measures(selection)
    assert list(out["lr"]) == [1e-4, 3e-4, 1e-2] and out["val_acc"].iloc[0] == 81.235
    assert list(out["at_grid_edge"]) == [False, False, True]
    written = tb.write_table(out, "sel", "mini", out_dir=tmp_path)
    assert "0.0001" in written["md"].read_text() and "0.0003" in written["csv"].read_text()


def test_rank_table_keeps_pairs_apart():
    one = pd.DataFrame([{"dataset": "d", "backbone": "b", "method": "adapter", "rank": r, "seed": s, "test_acc": 0.5}
                        for r in (1, 2) for s in range(2)])
    assert list(tables.rank_table(one).columns[:1]) == ["rank"]
    two = tables.rank_table(pd.concat([one, one.assign(dataset="e", test_acc=0.7)]))
    assert two[["dataset", "rank"]].values.tolist() == [["d", 1], ["d", 2], ["e", 1], ["e", 2]]
    assert two["mean_points"].tolist() == pytest.approx([50.0, 50.0, 70.0, 70.0])
