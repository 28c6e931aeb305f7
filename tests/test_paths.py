"""The project home: $ADAPTERTUNE_HOME, else the checkout, else the current directory — never site-packages — and
one syntactic rule for "this name is a path", so a run's identity never depends on the working directory."""
from __future__ import annotations

from pathlib import Path

import pytest

from adaptertune import RunConfig, paths


def test_home_is_the_env_var_then_the_checkout(monkeypatch, tmp_path):
    monkeypatch.setenv(paths.HOME_ENV, str(tmp_path))
    monkeypatch.delenv(paths.RESULTS_ENV, raising=False)
    assert paths.home() == tmp_path.resolve()
    assert paths.results_dir() == tmp_path.resolve() / "results" and paths.data_dir() == tmp_path.resolve() / "data"
    monkeypatch.delenv(paths.HOME_ENV)
    checkout = Path(paths.__file__).resolve().parent.parent
    assert paths.checkout_root() == checkout and paths.home() == checkout


def test_an_installed_package_uses_the_current_directory(monkeypatch, tmp_path):
    monkeypatch.delenv(paths.HOME_ENV, raising=False)
    monkeypatch.setattr(paths, "checkout_root", lambda: None)
    monkeypatch.chdir(tmp_path)
    assert paths.home() == tmp_path.resolve()
    assert "site-packages" not in str(paths.results_dir())


def test_results_env_moves_the_store_alone(monkeypatch, tmp_path):
    monkeypatch.setenv(paths.HOME_ENV, str(tmp_path / "home"))
    monkeypatch.setenv(paths.RESULTS_ENV, str(tmp_path / "elsewhere"))
    assert paths.results_dir() == (tmp_path / "elsewhere").resolve()
    assert paths.figures_dir() == (tmp_path / "home").resolve() / "figures"


@pytest.mark.parametrize("name, is_path", [("cifar10", False), ("mydata", False), ("./mydata", True), ("~/d", True),
                                           ("/abs/d", True), ("a/b", True), ("..\\\\d", True)])
def test_looks_like_path_is_syntactic(name, is_path):
    assert paths.looks_like_path(name) is is_path


def test_run_id_does_not_depend_on_the_working_directory(monkeypatch, tmp_path):
    (tmp_path / "fmnist_target").mkdir()  # a folder named like a registry dataset
    cfg = RunConfig(dataset="fmnist_target", backbone="mini-s", method="head")
    before = cfg.run_id
    monkeypatch.chdir(tmp_path)
    assert RunConfig(dataset="fmnist_target", backbone="mini-s", method="head").run_id == before
    assert cfg.resolved().dataset == "fmnist_target"
