"""``fit``: successive halving through the store on a user's ImageFolder, the adapter file + report, the file served
unchanged by ``predict`` and ``MultiTask``, and the clear refusals (one class, a class missing from validation, too
few images)."""
from __future__ import annotations

import json
import shlex
from types import SimpleNamespace

import fixtures_data as fx
import pytest
import torch
from safetensors.torch import save_file
from torch.utils.data import TensorDataset

from adaptertune import MultiTask, cli
from adaptertune.paper import fit as fitting
from adaptertune.paper import userdata
from adaptertune.store import runs as store
from adaptertune.store.models import backbone_for_run, load_model

SMALL = dict(profile="smoke", epochs=3, limit=None, pretrained=False, batch_size=64)


@pytest.fixture()
def folder(isolated_home):
    return fx.write_image_folder(isolated_home / "pics", per_class=100)


@pytest.mark.slow
def test_fit_on_a_folder_writes_a_served_adapter_and_a_report(isolated_home, folder, capsys):
    out = isolated_home / "out"
    lines: list[str] = []
    report = fitting.fit(str(folder), "mini-s", rank=4, out=out, log=lines.append, **SMALL)
    assert report.lr in (1e-3, 1e-2) and report.overhead_runs == report.cost_runs - 1 <= 2.5
    assert sum("val acc" in line and "after epoch" in line for line in lines) == 2  # two candidates: both finish
    saved = json.loads((out / "report.json").read_text())
    assert saved["lr"] == report.lr and [c["lr"] for c in saved["candidates"]] == [1e-3, 1e-2]
    assert saved["seeds"][0]["test_acc"] is not None
    assert {c["class"] for c in saved["per_class"]} == {"cat", "dog", "fox"}
    assert "python -m adaptertune predict" in (out / "report.md").read_text()
    level = next(c for c in report.candidates if c["chosen"])["val_acc"][report.margin_epoch]
    assert saved["val_images"] > 0 and saved["margin_noise_points"] == pytest.approx(
        100 * (level * (1 - level) / saved["val_images"]) ** 0.5)
    run_id = report.seeds[0]["run_id"]
    assert (out / "adapters.safetensors").read_bytes() == store.adapter_file_for_run(run_id).read_bytes()
    assert report.file_bytes == (out / "adapters.safetensors").stat().st_size

    backbone = backbone_for_run(run_id)  # random-init backbone here: the file's fingerprint must match it
    model = MultiTask(backbone, {"pics": out / "adapters.safetensors"}).eval()
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(model.forward_all(x)["pics"], load_model(run_id)(x), atol=1e-5)
    weights = isolated_home / "backbone.safetensors"
    save_file({k: v.contiguous() for k, v in backbone.state_dict().items()}, str(weights))
    code = cli.main(["predict", str(out / "adapters.safetensors"), "--images", str(folder / "train" / "cat"),
                     "--checkpoint", str(weights), "--out", str(isolated_home / "p.csv"), "--show", "0"])
    assert code == 0 and "-> " in capsys.readouterr().out

    again = fitting.fit(str(folder), "mini-s", rank=4, out=out, log=lambda s: None, **SMALL)  # all cached
    assert again.lr == report.lr and again.seeds == report.seeds


def _report(margin: float | None, noise: float | None) -> fitting.FitReport:
    return fitting.FitReport(
        dataset="pics", backbone="mini-s", method="adapter", rank=4, profile="smoke", schedule="s", cost_runs=3.4,
        overhead_runs=2.4, candidates=[], lr=1e-2, at_grid_edge=False, margin_points=margin, margin_epoch=5, seeds=[],
        per_class=[], trainable_params=1, file_bytes=1, adapter_file="a", predict_command="p", val_images=80,
        margin_noise_points=noise)


def test_the_report_says_whether_the_margin_beats_the_validation_noise():
    assert _report(1.25, 5.1).margin_within_noise and "a tie with the runner-up" in _report(1.25, 5.1).markdown()
    assert _report(7.5, 5.1).margin_within_noise is False and "beyond it." in _report(7.5, 5.1).markdown()
    assert _report(None, 5.1).margin_within_noise is None and "sampling sd" not in _report(None, 5.1).markdown()


def test_one_class_is_refused(isolated_home):
    fx.write_image_folder(isolated_home / "one", classes=("cat",), per_class=30)
    with pytest.raises(ValueError, match="need >= 2"):
        fitting.fit(str(isolated_home / "one"), "mini-s", log=lambda s: None, **SMALL)


def test_too_few_images_are_refused_with_the_number_needed(isolated_home):
    fx.write_image_folder(isolated_home / "few", per_class=6)
    with pytest.raises(ValueError, match=r"too few to choose a learning rate: fit needs at least 20 .* at least 200 "
                                         r"training images; a folder without test/ gives 20% .* about 250 images"):
        fitting.fit(str(isolated_home / "few"), "mini-s", log=lambda s: None, **SMALL)


def test_bad_requests_are_refused_before_anything_trains(isolated_home, monkeypatch):
    folder = fx.write_image_folder(isolated_home / "my pics", per_class=40)
    monkeypatch.setattr(fitting, "run_halving", lambda *a, **k: pytest.fail("nothing may train"))
    monkeypatch.setattr(fitting, "advise", lambda *a, **k: pytest.fail("nothing may train"))
    with pytest.raises(ValueError, match=r"seeds \[-1\] are not allowed"):
        fitting.fit(str(folder), "mini-s", seeds=(0, -1), log=lambda s: None, **SMALL)
    (isolated_home / "taken").write_text("a file")
    with pytest.raises(ValueError, match="exists and is not a folder"):
        fitting.fit(str(folder), "mini-s", out=isolated_home / "taken" / "out", log=lambda s: None, **SMALL)
    with pytest.raises(ValueError, match="over the budget of 0.5: a budget of at least"):
        fitting.fit(str(folder), "mini-s", rank="auto", budget=0.5, log=lambda s: None, **SMALL)
    (folder / "train" / "cat" / "zz_broken.png").write_text("not an image")
    with pytest.raises(ValueError, match=r"1 image file\(s\) cannot be opened as images, e.g. train/cat/zz_broken.png"):
        fitting.fit(str(folder), "mini-s", log=lambda s: None, **SMALL)


def test_a_bare_name_that_is_both_a_dataset_and_a_folder_is_ambiguous(isolated_home, monkeypatch):
    monkeypatch.chdir(isolated_home)
    (isolated_home / "digits").mkdir()
    with pytest.raises(ValueError, match="both a registered dataset and a folder here: pass ./digits"):
        userdata.dataset_name("digits")
    assert userdata.dataset_name("./digits") == "./digits"


def test_the_predict_command_is_quoted_and_the_report_is_strict_json(tmp_path):
    record = {"run_id": "0123456789ab", "config": {"pretrained": True}}
    command = fitting._predict_command(tmp_path / "my out" / "adapters.safetensors", record, "mini", None)
    assert shlex.split(command)[4] == str(tmp_path / "my out" / "adapters.safetensors")
    random_init = fitting._predict_command(tmp_path / "a.safetensors", {**record, "config": {"pretrained": False}},
                                           "smoke", tmp_path / "store")
    assert shlex.split(random_init)[4:] == ["0123456789ab", "--images", "IMAGES", "--root", str(tmp_path / "store")]
    cleaned = fitting._json_safe({"overlap": float("nan"), "curve": [1.0, float("inf")], "rank": 64})
    assert json.loads(json.dumps(cleaned, allow_nan=False)) == {"overlap": None, "curve": [1.0, None], "rank": 64}


def test_a_class_missing_from_validation_is_refused(monkeypatch):
    def labels(*ys):
        return TensorDataset(torch.zeros(len(ys), 1), torch.tensor(ys))

    fake = SimpleNamespace(class_names=["cat", "dog", "fox"], num_classes=3, val=labels(*[0] * 15, *[1] * 10),
                           train=labels(*[0, 1, 2] * 80))
    monkeypatch.setattr(userdata, "load_for_run", lambda cfg: fake)
    cfg = fitting.tuning.cell_config("smoke", "./x", "mini-s", "adapter", 0, 1e-3)
    with pytest.raises(ValueError, match=r"class\(es\) \['fox'\] have no validation image"):
        userdata.check_selectable(cfg)
    fake.val = labels(*[0] * 15, *[1] * 10, 2)
    assert userdata.check_selectable(cfg) == {"cat": 15, "dog": 10, "fox": 1}


def test_bad_arguments_fail_before_any_work(isolated_home):
    with pytest.raises(ValueError, match="neither a registered dataset"):
        fitting.fit("no_such_thing", "mini-s")
    with pytest.raises(ValueError, match="method='full' is not allowed.*whole-model regime"):
        fitting.fit("digits", "mini-s", method="full")
    with pytest.raises(ValueError, match="rank='auto' advises an adapter"):
        fitting.fit("digits", "mini-s", method="head", rank="auto")


def test_fit_on_a_registered_dataset_reuses_the_tuned_protocols_selection_runs():
    for dataset in fitting.protocol("mini").datasets:
        fit_ids = [c.run_id for c in fitting.fit_configs(dataset, "mini-s", "adapter", "mini", rank=16)]
        searched = {c.run_id for c in fitting.tuning.selection_configs("mini", dataset, "mini-s", "adapter")}
        assert set(fit_ids) <= searched  # fit searches the selection seed; a dataset chosen over several has more
        assert len(searched) == len(fit_ids) * len(fitting.tuning.selection_seeds("mini", dataset))
    assert fitting.fit_configs("digits", "mini-s", "adapter", "mini", rank=4)[0].run_id not in fit_ids
