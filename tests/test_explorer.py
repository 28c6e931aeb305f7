"""The explorer's rank curve averages only runs at the recipe, never sensitivity runs that share a rank."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from adaptertune.paper import experiments, explorer  # noqa: E402

RECIPE = experiments.recipe("mini", "fmnist_target")


def row(method: str, acc: float, seed: int = 0, rank: float | None = None, **changes) -> dict:
    base = {"profile": "mini", "dataset": "fmnist_target", "backbone": "mini-s", "method": method, "seed": seed,
            "rank": rank, "every": 1 if method == "adapter" else None, "start": 0 if method == "adapter" else None,
            "init": "zero" if method == "adapter" else None, "scale": 1.0 if method == "adapter" else None,
            "lr": RECIPE["lr"], "weight_decay": RECIPE["weight_decay"], "epochs": RECIPE["epochs"], "test_acc": acc,
            "best_val_acc": acc, "train_eval_acc": acc, "trainable_params": 100, "run_id": f"{method}{rank}{seed}{changes}"}
    return {**base, **changes}


FRAME = pd.DataFrame([
    row("adapter", 0.80, 0, 16), row("adapter", 0.82, 1, 16), row("adapter", 0.70, 0, 1),
    row("adapter", 0.99, 0, 16, lr=3 * RECIPE["lr"]),  # a sensitivity run at r=16
    row("adapter", 0.10, 0, 16, weight_decay=0.5), row("adapter", 0.50, 0, 16, epochs=3),
    row("adapter", 0.95, 0, 16, scale=4.0), row("adapter", 0.60, 0, 16, every=2),
    row("head", 0.60), row("full", 0.90), row("full", 0.40, 0, None, lr=3 * RECIPE["lr"]),
])


def test_recipe_runs_keep_the_rank_curve_at_the_recipe():
    runs = explorer.recipe_runs(FRAME, "fmnist_target", "mini-s")
    adapters = runs[runs["method"] == "adapter"]
    assert sorted(adapters["test_acc"]) == [0.70, 0.80, 0.82]
    assert adapters[adapters["rank"] == 16]["test_acc"].mean() == pytest.approx(0.81)
    assert sorted(runs.loc[runs["method"] != "adapter", "test_acc"]) == [0.60, 0.90]


def test_render_refuses_mixed_profiles_and_still_tables_every_configuration():
    with pytest.raises(ValueError, match="several profiles"):
        explorer.render(pd.concat([FRAME, FRAME.assign(profile="smoke")]), "fmnist_target", "mini-s")
    fig, table = explorer.render(FRAME, "fmnist_target", "mini-s")
    assert fig is not None and table["seeds"].sum() == len(FRAME)


def test_a_headless_run_shows_no_widgets(monkeypatch, capsys):
    """The suite's kernels have no frontend: widgets stand down there (nbclient can hang on an Output widget)."""
    from adaptertune.paper.notebooks import HEADLESS_ENV

    monkeypatch.setenv(HEADLESS_ENV, "1")
    assert explorer.show(pd.DataFrame(columns=["dataset", "backbone", "profile"]), profile="mini") is None
    assert "need a live kernel" in capsys.readouterr().out
