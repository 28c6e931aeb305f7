"""Figures: every plot saves PNG + PDF, smoke figures are stamped, names are unique."""

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from adaptertune.paper import plots, result_plots, tables  # noqa: E402
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
