"""The notebook suite: notebook conventions, parameter checking, planning, failure reporting, the notebooks on an
empty store (they render what exists and name what is missing), and the smoke suite end to end (pretraining,
sweep, six notebooks, HTML appendix) in a throw-away project home."""
from __future__ import annotations

import ast
import json
import re

import nbformat
import pytest

from adaptertune.paper import experiments, notebooks, plan, plots, suite
from helpers import needs_fashion_mnist

NOTEBOOKS = notebooks.notebooks()


def test_six_notebooks_in_order():
    assert [nb.stem for nb in NOTEBOOKS] == ["01_method", "02_theory", "03_main_results", "04_ablations",
                                             "05_failure_analysis", "06_multitask"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_conventions(path):
    book = nbformat.read(path, as_version=4)
    first = book.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# ") and "Claim" in first.source
    tagged = [c for c in book.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    declared = notebooks.declared_parameters(path)
    lines = [ln for ln in tagged[0].source.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert len(declared) == len(lines), "every line of the parameters cell must parse (papermill skips bad ones)"
    assert declared["profile"]["default"] == '"mini"' and declared["profile"]["inferred_type_name"] == "str"
    code = [c.source for c in book.cells if c.cell_type == "code"]
    for source in code:
        defined = [n for n in ast.walk(ast.parse(source)) if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.Lambda))]
        assert not defined, "notebooks call the package; they define nothing"
        assert "../" not in source and "os.chdir" not in source
    assert "assert " in code[-1], "a notebook ends with assertions on what it produced"
    assert not any(c.get("outputs") for c in book.cells if c.cell_type == "code"), "commit notebooks without outputs"


def test_unknown_parameter_is_an_error_naming_the_notebook():
    with pytest.raises(ValueError, match=r"\['bogus'\] are not declared by notebook 01_method.ipynb"):
        notebooks.check_parameters(NOTEBOOKS, {"profile": "smoke", "bogus": 1})
    notebooks.check_parameters(NOTEBOOKS, {"profile": "smoke"})  # declared by all six
    with pytest.raises(ValueError, match="images"):
        notebooks.check_parameters(NOTEBOOKS, {"images": 8})  # only 02 declares it
    notebooks.check_parameters(notebooks.notebooks(["02"]), {"images": 8})


def test_only_and_param_parsing():
    assert [nb.stem for nb in notebooks.notebooks(["03"])] == ["03_main_results"]
    assert len(notebooks.notebooks(["01", "05"])) == 2
    with pytest.raises(ValueError, match="matches no notebook"):
        notebooks.notebooks(["09"])
    assert notebooks.parse_param("images=256") == ("images", 256)
    assert notebooks.parse_param("energy=0.8") == ("energy", 0.8)
    assert notebooks.parse_param("flag=False") == ("flag", False)
    assert notebooks.parse_param("profile=mini") == ("profile", "mini")
    with pytest.raises(ValueError, match="KEY=VALUE"):
        notebooks.parse_param("images")


def test_dry_run_lists_runs_and_trains_nothing(isolated_home, capsys):
    assert suite.main(["--profile", "smoke", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"{len(experiments.plan('smoke'))} runs" in out and "dry run: nothing trained" in out
    for cfg in experiments.all_configs("smoke"):
        assert cfg.run_id in out
    assert not (isolated_home / "results").exists() and not (isolated_home / "data" / "backbones").exists()


def test_paper_plan_reports_runs_and_gpu_hours(isolated_home):
    table = plan.plan_frame("paper")
    text = plan.describe_plan("paper", table)
    assert f"{len(experiments.plan('paper'))} runs" in text and "GPU-hours" in text and "chosen on the way" in text
    assert table["run_id"].is_unique and set(table["status"]) == {"missing", "projected"} and (table["est_s"] > 0).all()


def test_cli_rejects_unknown_parameter(isolated_home, capsys):
    assert suite.main(["--profile", "smoke", "--param", "bogus=1", "--dry-run"]) == 2
    assert "bogus" in capsys.readouterr().err


def test_failing_notebook_names_notebook_and_cell(tmp_path):
    book = nbformat.v4.new_notebook()
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    book.cells = [nbformat.v4.new_markdown_cell("# x"),
                  nbformat.v4.new_code_cell('profile: str = "mini"', metadata={"tags": ["parameters"]}),
                  nbformat.v4.new_code_cell("x = 1"),
                  nbformat.v4.new_code_cell("raise RuntimeError('boom in ' + profile)")]
    path = tmp_path / "99_fail.ipynb"
    nbformat.write(book, path)
    out = tmp_path / "executed" / path.name
    with pytest.raises(notebooks.NotebookFailed) as err:
        notebooks.execute(path, out, {"profile": "smoke"})
    message = str(err.value)
    assert "99_fail.ipynb" in message and "RuntimeError: boom in smoke" in message and "cell" in message
    kept = json.loads(out.read_text())
    assert any(o.get("output_type") == "error" for c in kept["cells"] for o in c.get("outputs", []))


def _book(path, body: str):
    book = nbformat.v4.new_notebook()
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    book.cells = [nbformat.v4.new_code_cell('profile: str = "mini"', metadata={"tags": ["parameters"]}),
                  nbformat.v4.new_code_cell(body)]
    nbformat.write(book, path)
    return path


@pytest.mark.slow
def test_notebooks_run_two_at_a_time_report_in_order_and_fail_with_the_first_failure(tmp_path):
    good = [_book(tmp_path / f"0{k}_ok.ipynb", f"print({k} * 7)") for k in (1, 2, 3)]
    done: list[int] = []
    secs = notebooks.execute_all(good, tmp_path / "out", {"profile": "smoke"}, workers=2,
                                 on_done=lambda k, nb, s: done.append(k))
    assert len(secs) == 3 and all(s > 0 for s in secs) and sorted(done) == [0, 1, 2]
    for k, nb in enumerate(good, 1):
        outputs = json.loads((tmp_path / "out" / nb.name).read_text())["cells"][-1]["outputs"]
        text = outputs[0]["text"]
        assert ("".join(text) if isinstance(text, list) else text).strip() == str(k * 7)
    bad = _book(tmp_path / "04_fail.ipynb", "raise ValueError('second')")
    with pytest.raises(notebooks.NotebookFailed, match="04_fail.ipynb.*ValueError: second"):
        notebooks.execute_all([good[0], bad], tmp_path / "out2", {"profile": "smoke"}, workers=2)
    assert (tmp_path / "out2" / good[0].name).exists()  # the one already started finished


def test_executed_notebooks_keep_nothing_that_changes_between_executions(tmp_path, monkeypatch):
    monkeypatch.setenv("ADAPTERTUNE_HOME", str(tmp_path))
    stamp = {"start_time": "2026-01-01T00:00:00", "end_time": "2026-01-01T00:00:01", "duration": 1.0}
    book = {"nbformat": 4, "nbformat_minor": 5,
            "metadata": {"papermill": {**stamp, "input_path": str(tmp_path / "notebooks" / "01_method.ipynb"),
                                       "parameters": {"profile": "mini"}}, "widgets": {"state": {"a1b2": {}}}},
            "cells": [{"cell_type": "code", "id": "9f8e7d6c", "source": "profile = 'mini'", "execution_count": 1,
                       "metadata": {"tags": ["injected-parameters"], "execution": {"iopub.status.busy": "now"},
                                    "papermill": {**stamp, "status": "completed"}},
                       "outputs": [{"output_type": "display_data", "metadata": {},
                                    "data": {"text/plain": "VBox()", notebooks._WIDGET_VIEW: {"model_id": "a1b2"}}}]}]}
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(book))
    notebooks.make_reproducible(path)
    kept = json.loads(path.read_text())
    cell = kept["cells"][0]
    assert kept["metadata"]["papermill"] == {"input_path": "notebooks/01_method.ipynb", "parameters": {"profile": "mini"}}
    assert "widgets" not in kept["metadata"] and cell["id"] == "injected-parameters"
    assert cell["metadata"] == {"tags": ["injected-parameters"], "papermill": {"status": "completed"}}
    assert cell["outputs"][0]["data"] == {"text/plain": "VBox()"} and cell["source"] == "profile = 'mini'"


def test_write_index(tmp_path):
    pages = [(tmp_path / "01_method.html", "01 — Method", 3.0), (tmp_path / "02_theory.html", "02 — Theory", 4.0)]
    index = notebooks.write_index("smoke", pages, tmp_path)
    text = index.read_text()
    assert 'href="01_method.html"' in text and 'href="02_theory.html"' in text and "SMOKE" in text


@pytest.mark.slow
@pytest.mark.timeout(900)
@needs_fashion_mnist
def test_smoke_suite_end_to_end(isolated_home, capsys):
    assert suite.main(["--profile", "smoke"]) == 0
    out = capsys.readouterr().out
    assert "notebook 6/6 06_multitask done" in out
    appendix = isolated_home / "figures" / "appendix" / "smoke"
    index = (appendix / "index.html").read_text()
    for nb in NOTEBOOKS:
        assert f'href="{nb.stem}.html"' in index
        page = (appendix / f"{nb.stem}.html").read_text()
        assert "data:image/png;base64" in page and "Traceback" not in page
        assert (isolated_home / "notebooks" / "executed" / "smoke" / nb.name).is_file()
    for stem in plots.FIGURES.values():
        for ext in ("png", "pdf"):
            assert (isolated_home / "figures" / "smoke" / f"{stem}.{ext}").is_file(), stem
    tables_dir = isolated_home / "figures" / "tables" / "smoke"
    for name in ("tab1_params", "tab2_main", "tab3_rank", "tab4_placement", "tab4_init", "tab5_sensitivity",
                 "tab_multitask_tasks", "tab_multitask_predictions"):
        for ext in ("csv", "md", "tex"):
            assert (tables_dir / f"{name}.{ext}").is_file(), name
    # a second suite run finds everything cached: nothing trains, and the executed notebook comes out byte for byte
    executed = isolated_home / "notebooks" / "executed" / "smoke" / "03_main_results.ipynb"
    first = executed.read_bytes()
    assert suite.main(["--profile", "smoke", "--only", "03"]) == 0
    assert "0 to train" in capsys.readouterr().out
    assert executed.read_bytes() == first


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_notebooks_render_an_empty_store_and_say_what_is_missing(isolated_home, capsys):
    assert suite.main(["--profile", "smoke", "--no-train"]) == 0
    assert not (isolated_home / "results" / "runs").exists(), "a notebook trained something"
    executed = isolated_home / "notebooks" / "executed" / "smoke" / "03_main_results.ipynb"
    text = executed.read_text()
    assert re.search(r"(\d+) of \1 known runs of grid\(s\) main, tuned, selection, extended \(smoke\) are missing", text)
    assert "python -m adaptertune.paper.suite --profile smoke" in text
    for stem in plots.FIGURES.values():
        assert (isolated_home / "figures" / "smoke" / f"{stem}.png").is_file(), stem
