"""Figures: every plot saves PNG + PDF, smoke figures are stamped, names are unique."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from adaptertune.paper import elbow, plots, result_plots, tables, theory  # noqa: E402
from frames import MAIN  # noqa: E402


def test_every_figure_saves_png_and_pdf_with_a_smoke_label(tmp_path):
    fig = result_plots.main_results(tables.stack({"tuned": MAIN}))
    paths = plots.save(fig, "main_results", "smoke", out_dir=tmp_path)
    assert paths["png"].name == "fig03_main_results.png" and paths["png"].stat().st_size > 0 and paths["pdf"].is_file()
    assert any(t.get_text() == plots.SMOKE_LABEL for t in fig.texts)
    fig = result_plots.generalisation_gap(tables.generalisation_gap(tables.stack({"tuned": MAIN})))
    plots.save(fig, "generalisation_gap", "mini", out_dir=tmp_path)
    assert not any(t.get_text() == plots.SMOKE_LABEL for t in fig.texts)
    with pytest.raises(ValueError, match="figure key"):
        plots.save(fig, "nope", "mini", out_dir=tmp_path)
    plots.save(plots.placement_schematic(6, every=2, start=0), "placement_schematic", "mini", out_dir=tmp_path)
    assert (tmp_path / "fig01_adapter_placement.pdf").is_file()


def test_figure_names_are_unique():
    assert len(set(plots.FIGURES.values())) == len(plots.FIGURES)


def test_missing_runs_draw_a_placeholder_not_an_error():
    fig = result_plots.main_results(MAIN.iloc[:0])
    assert any("no runs in the store yet" in t.get_text() for ax in fig.axes for t in ax.texts)


# -- notebooks 01 and 02 -----------------------------------------------------------------------------------------
def _legend_texts(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()] + \
        [t.get_text() for leg in fig.legends for t in leg.get_texts()]


def _steps() -> pd.DataFrame:
    rows = [{"init": init, "seed": seed, "step": step, "epoch": 1 + step // 5, "loss": 2.0 - 0.1 * step + 0.01 * seed
             + (0.001 * step if init == "random" else 0.0)} for init in ("zero", "random") for seed in (0, 1)
            for step in range(10)]
    return pd.DataFrame(rows)


def test_early_training_shows_the_paired_difference_per_seed():
    fig = plots.early_training(_steps(), max_epochs=1)  # "the first epoch": epochs are logged from 1
    assert len(fig.axes) == 2
    texts = _legend_texts(fig)
    assert "zero init (n=2 seeds)" in texts and any("n=2 seeds" in t and "mean" in t for t in texts)
    diff_axis = fig.axes[1]
    mean_line = next(line for line in diff_axis.get_lines() if line.get_label().startswith("mean over"))
    np.testing.assert_allclose(mean_line.get_ydata(), 0.001 * np.arange(5), atol=1e-12)  # epoch 1 = steps 0..4
    assert "epoch 1 as logged" in fig._suptitle.get_text()
    only_zero = plots.early_training(_steps().query("init == 'zero'"))
    assert any("both inits" in t.get_text() for t in only_zero.axes[1].texts)
    assert plots.early_training(_steps(), max_epochs=0.5).axes[0].texts  # nothing that early: a placeholder


def _theory_frames():
    M, H, D = theory.synthetic_shift(dim=8, alpha=1.0, n=400, seed=0)
    fits = [theory.estimate_shift(H, D + 0.05 * np.tanh(3 * H)), theory.estimate_shift(H, 2 * D)]
    ranks = [1, 2, 4, 8]
    spectrum, summary = theory.spectra_table(fits, ranks)
    tails = theory.tail_curves(fits, ranks)
    frames = [f.assign(kind=theory.KIND_FULL, run_id="full0") for f in (spectrum, summary, tails)]
    spectrum = pd.concat([frames[0], spectrum.assign(kind=theory.KIND_ADAPTER, run_id="ad0")], ignore_index=True)
    rank_runs = pd.DataFrame([{"method": "adapter", "rank": r, "seed": s, "test_acc": 0.5 + 0.05 * np.log2(r) + 0.01 * s}
                              for r in ranks for s in range(3)])
    return spectrum, frames[1], frames[2], rank_runs, ranks


def test_fig02_figures_draw_and_save(tmp_path):
    spectrum, summary, tails, rank_runs, ranks = _theory_frames()
    full = spectrum.query("kind == @theory.KIND_FULL")
    for key, fig in (("spectra", plots.spectra(full, summary, fit_top=4)), ("tail", plots.tail(tails)),
                     ("adapter_spectra", plots.adapter_spectra(spectrum, probe_rank=2))):
        assert plots.save(fig, key, "mini", out_dir=tmp_path)["png"].stat().st_size > 0
    assert "n=2 blocks × runs" in plots.tail(tails).axes[0].get_title()
    assert {"full FT shift (n=1 runs)", "trained adapter (n=1 runs)"} <= set(_legend_texts(plots.adapter_spectra(spectrum)))


def test_elbow_overlay_has_two_panels_a_shaded_range_and_says_n():
    _, _, tails, rank_runs, ranks = _theory_frames()
    predicted = elbow.predicted_elbow(tails, ranks, energies=(0.8, 0.95))
    measured = elbow.measured_elbow(rank_runs, ranks)
    fig = plots.elbow_overlay(rank_runs, tails, predicted, measured)
    assert len(fig.axes) == 2  # no twin axis
    texts = " | ".join(_legend_texts(fig))
    assert "mean ± sd over n=3 seeds" in texts and "no elbow within the grid" in texts
    assert f"predicted elbow r={predicted.low}–{predicted.high}" in texts and "e=0.8–0.95" in texts
    assert "nonlinear residual" in texts
    assert not any(ax.get_legend() for ax in fig.axes)  # one legend, below the panels
    inside = elbow.MeasuredElbow(measured.table, 2, False, True, 0.95, "r=2")
    assert "measured elbow r=2" in " ".join(_legend_texts(plots.elbow_overlay(rank_runs, tails, predicted, inside)))
    assert plots.elbow_overlay(rank_runs.iloc[:0], tails, predicted, measured).axes[0].texts  # placeholder
    no_shift = plots.elbow_overlay(rank_runs, tails.iloc[:0], elbow.predicted_elbow(tails.iloc[:0], ranks), measured)
    assert any("no full fine-tuning run" in t.get_text() for t in no_shift.axes[1].texts)


def test_bound_figure_leaves_out_the_exact_zero_and_shows_the_ratio():
    synthetic = theory.synthetic_check(dim=16, ranks=[1, 2, 4, 8, 16], n=500)
    fig = plots.bound(synthetic["bound"], n=500)
    left, right = fig.axes
    assert left.get_ylim()[0] > 1e-10  # the exact zero at r = d is not on the log axis
    assert "r=16 the bound is exactly 0" in fig._suptitle.get_text() and "n=500" in fig._suptitle.get_text()
    ratio = next(line for line in right.get_lines() if line.get_label() == "measured / bound").get_ydata()
    assert len(ratio) == 4 and (ratio <= 1).all()
