"""Inference on image files: the eval transform matches training, images are found in files / folders / ImageFolder
trees, undecodable ones are skipped and reported, predictions equal the model's, accuracy and confusions are scored,
and `python -m adaptertune predict` ties it together."""
from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from adaptertune import MultiTask, create_backbone, eval_transform, find_images, predict, prepare, save_adapters, score
from adaptertune.cli import main
from adaptertune.data.transforms import TensorPrep, check_data_config
from adaptertune.inference import ImageItem, required_class_names, write_predictions
from helpers import needs_fashion_mnist, perturb_trainable

MINI_CONFIG = {"input_size": (1, 28, 28), "mean": (0.286,), "std": (0.353,), "crop_pct": 1.0, "interpolation": "bilinear"}
CLASSES = ["circle", "square", "cross"]


def save_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def random_images(n, seed=0, size=28):
    return np.random.default_rng(seed).integers(0, 256, size=(n, size, size), dtype=np.uint8)


@pytest.fixture()
def tree(tmp_path):
    """An ImageFolder tree <root>/<class>/<image>.png with a folder that is none of the task's classes, plus one
    file that is not an image at all."""
    root = tmp_path / "tree"
    for k, cls in enumerate(CLASSES + ["Circle", "triangle"][1:]):
        for j, array in enumerate(random_images(3, seed=k)):
            save_png(root / cls / f"{j}.png", array)
    (root / "square" / "broken.png").write_bytes(b"this is not a png")
    return root


def trained_on(backbone, classes, seed, **options):
    model = create_backbone("mini-s", classes, pretrained=False)
    model.load_state_dict({k: v for k, v in backbone.state_dict().items() if not k.startswith("head.")}, strict=False)
    torch.manual_seed(seed)
    prepare(model, "adapter", **options)
    return perturb_trainable(model, 0.1).eval()


@pytest.fixture()
def served(tmp_path):
    torch.manual_seed(0)
    backbone = create_backbone("mini-s", 1, pretrained=False).eval()
    shapes = trained_on(backbone, 3, 1, rank=4, start=3)
    digits = trained_on(backbone, 10, 2, rank=4)
    files = {"shapes": save_adapters(shapes, tmp_path / "shapes.safetensors", class_names=CLASSES),
             "digits": save_adapters(digits, tmp_path / "digits.safetensors", class_names=[str(i) for i in range(10)])}
    return backbone, {"shapes": shapes, "digits": digits}, files


def test_eval_transform_on_png_equals_the_in_memory_mini_preparation(tmp_path):
    """A 28x28 grayscale PNG gives bit-identical inputs to the tensors the mini datasets train and test on."""
    arrays = random_images(4)
    paths = [save_png(tmp_path / f"{i}.png", a) for i, a in enumerate(arrays)]
    tf = eval_transform(MINI_CONFIG)
    from_files = torch.stack([tf(Image.open(p).convert("RGB")) for p in paths])
    in_memory = TensorPrep(check_data_config(MINI_CONFIG))(torch.from_numpy(arrays).unsqueeze(1))
    assert torch.equal(from_files, in_memory)


def test_eval_transform_resizes_and_crops_like_timm(tmp_path):
    tf = eval_transform({**MINI_CONFIG, "input_size": (3, 32, 32), "crop_pct": 0.875})
    x = tf(Image.fromarray(random_images(1, size=50)[0]).convert("RGB"))
    assert x.shape == (3, 32, 32)


def test_find_images_files_folders_and_trees(tmp_path, tree):
    flat = tmp_path / "flat"
    for j, array in enumerate(random_images(2)):
        save_png(flat / f"{j}.png", array)
    (flat / "notes.txt").write_text("ignored: not an image extension")
    single = save_png(tmp_path / "one.png", random_images(1)[0])
    items = find_images([single, flat, tree])
    assert items[0] == ImageItem(single) and [i.path.name for i in items[1:3]] == ["0.png", "1.png"]
    labelled = items[3:]
    assert {i.label for i in labelled} == {"circle", "square", "cross", "triangle"} and len(labelled) == 13
    mixed = tmp_path / "mixed"
    save_png(mixed / "top.png", random_images(1)[0])
    save_png(mixed / "cls" / "inner.png", random_images(1)[0])
    with pytest.raises(ValueError, match="top level and in subfolders"):
        find_images([mixed])
    with pytest.raises(ValueError, match="does not exist"):
        find_images([tmp_path / "nowhere"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images found"):
        find_images([tmp_path / "empty"])


def test_predictions_equal_the_model_and_undecodable_images_are_skipped(served, tree):
    backbone, models, files = served
    mt = MultiTask(backbone, files)
    items = find_images([tree])
    result = predict(mt, items, batch_size=4, top_k=3)
    assert [str(p.name) for p, _ in result.skipped] == ["broken.png"] and "UnidentifiedImageError" in result.skipped[0][1]
    assert "<_io." not in result.skipped[0][1]  # the reason, not PIL's file object (the path is printed beside it)
    good = [i for i in items if i.path.name != "broken.png"]
    assert len(result.rows) == 2 * len(good)
    tf = eval_transform(mt.data_config)
    x = torch.stack([tf(Image.open(i.path).convert("RGB")) for i in good])
    for name, classes in (("shapes", CLASSES), ("digits", [str(i) for i in range(10)])):
        rows = {r["image"]: r for r in result.rows if r["task"] == name}
        with torch.no_grad():
            probs = models[name](x).softmax(1)
        for item, p in zip(good, probs):
            row = rows[str(item.path)]
            assert row["label"] == item.label and len(row["top"]) == 3
            top = torch.topk(p, 3)
            assert [c for c, _ in row["top"]] == [classes[k] for k in top.indices.tolist()]
            assert np.allclose([q for _, q in row["top"]], top.values.tolist(), atol=1e-6)
            assert row["pred"] == row["top"][0][0]


def test_score_accuracy_and_confusions():
    rows = [{"task": "t", "image": f"{i}", "label": lab, "pred": pred, "prob": 1.0, "top": []} for i, (lab, pred) in
            enumerate([("circle", "circle"), ("circle", "cross"), ("CIRCLE", "circle"), ("square", "cross"),
                       ("square", "cross"), ("triangle", "circle")])]
    from adaptertune.inference import Predictions

    scores = score(Predictions(rows=rows, tasks=("t",)), {"t": CLASSES})
    s = scores["t"]
    assert (s.labelled, s.scored, s.correct, s.unknown_labels) == (6, 5, 2, ("triangle",))
    assert s.accuracy == pytest.approx(0.4)
    by_class = {c["class"]: c for c in s.per_class}
    assert by_class["circle"]["n"] == 3 and by_class["circle"]["top_confusion"] == "cross"
    assert by_class["square"]["accuracy"] == 0 and by_class["square"]["confusion_n"] == 2
    assert "cross" not in by_class  # no image of that class
    assert score(Predictions(rows=[{**rows[0], "label": None}], tasks=("t",)), {"t": CLASSES}) == {}


def test_missing_class_names_are_one_clear_error(served, tmp_path):
    backbone, models, _ = served
    nameless = save_adapters(models["shapes"], tmp_path / "nameless.safetensors")
    mt = MultiTask(backbone, {"nameless": nameless})
    with pytest.raises(ValueError, match="task 'nameless'.*has no class-name table.*--class-names nameless=FILE"):
        predict(mt, [ImageItem(tmp_path / "x.png")])
    assert required_class_names(MultiTask(backbone, {"n": nameless}, class_names={"n": CLASSES}), ["n"]) == {"n": CLASSES}


def test_write_predictions_csv_and_json(served, tree, tmp_path):
    backbone, _, files = served
    result = predict(MultiTask(backbone, files), find_images([tree / "circle"]), top_k=2)
    with open(write_predictions(result, tmp_path / "p.csv")) as f:
        table = list(csv.DictReader(f))
    assert len(table) == 6 and list(table[0]) == ["task", "image", "label", "pred", "prob", "top1", "p1", "top2", "p2"]
    assert table[0]["pred"] == table[0]["top1"] and table[0]["label"] == ""
    data = json.loads(write_predictions(result, tmp_path / "p.json").read_text())
    assert data["tasks"] == ["shapes", "digits"] and len(data["predictions"]) == 6
    assert set(data["predictions"][0]["top"][0]) == {"class", "prob"}
    with pytest.raises(ValueError, match=r"\.csv or \.json"):
        write_predictions(result, tmp_path / "p.txt")


# -- the command line ------------------------------------------------------------------------------------------------
@pytest.fixture()
def on_disk(isolated_home, served):
    """The served backbone installed as the smoke profile's pretrained mini-s, so adapter files resolve to it."""
    backbone, models, files = served
    weights = isolated_home / "data" / "backbones" / "smoke" / "mini-s.safetensors"
    weights.parent.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in backbone.state_dict().items() if not k.startswith("head.")}, str(weights))
    return files


def test_cli_predict_on_a_tree_prints_accuracy_and_confusions(on_disk, tree, tmp_path, capsys):
    out = tmp_path / "preds.csv"
    code = main(["predict", str(on_disk["shapes"]), f"d={on_disk['digits']}", "--images", str(tree), "--out", str(out),
                 "--profile", "smoke", "--top-k", "2", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "2 task(s) on one frozen backbone" in captured.out and "shapes (3 classes, rank 4 from block 3)" in captured.out
    assert "broken.png" in captured.err and "skipped 1 of 13 image(s)" in captured.out
    assert "12 image(s) x 2 task(s)" in captured.out
    assert "shapes: accuracy" in captured.out and "most often confused with" in captured.out
    assert "(9/9 labelled images)" not in captured.out and "/9 labelled images); 3 image(s) with other labels ['triangle']" in captured.out
    assert "d: no folder label names one of its classes" in captured.out
    with open(out) as f:
        assert len(list(csv.DictReader(f))) == 24


def test_cli_predict_errors(on_disk, tree, tmp_path, capsys):
    shapes = str(on_disk["shapes"])
    cases = [
        (["predict", shapes, shapes, "--images", str(tree)], r"duplicate task names \['shapes'\]"),
        (["predict", "nope", "--images", str(tree)], "neither an adapter file nor a run id"),
        (["predict", shapes, "--images", str(tmp_path / "missing")], "does not exist"),
        (["predict", shapes, "--images", str(tree), "--profile", "mini"], "no pretrained weights for mini backbone"),
    ]
    for argv, message in cases:
        assert main(argv + ["--out", str(tmp_path / "p.csv")]) == 2
        assert re.search(message, capsys.readouterr().err), message
    torch.manual_seed(9)
    other = create_backbone("mini-s", 1, pretrained=False)
    ckpt = tmp_path / "other.safetensors"
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(ckpt))
    assert main(["predict", shapes, "--images", str(tree), "--checkpoint", str(ckpt), "--out", str(tmp_path / "p.csv")]) == 2
    err = capsys.readouterr().err
    assert "trained on another backbone" in err and "--checkpoint" in err
    bad = tmp_path / "bad"
    (bad / "x").mkdir(parents=True)
    (bad / "x" / "a.png").write_bytes(b"garbage")
    assert main(["predict", shapes, "--images", str(bad), "--profile", "smoke", "--out", str(tmp_path / "p.csv")]) == 2
    assert "no image could be decoded" in capsys.readouterr().err


def test_cli_class_names_for_a_file_without_them(on_disk, served, tree, tmp_path, capsys):
    _, models, _ = served
    nameless = save_adapters(models["shapes"], tmp_path / "nameless.safetensors")
    argv = ["predict", str(nameless), "--images", str(tree), "--profile", "smoke", "--out", str(tmp_path / "p.json")]
    assert main(argv) == 2
    assert "has no class-name table" in capsys.readouterr().err
    names = tmp_path / "names.txt"
    names.write_text("\n".join(CLASSES) + "\n")
    assert main(argv + ["--class-names", str(names)]) == 0
    assert "nameless: accuracy" in capsys.readouterr().out
    assert json.loads((tmp_path / "p.json").read_text())["skipped"][0]["image"].endswith("broken.png")


@pytest.mark.slow
@needs_fashion_mnist
def test_predict_by_run_id_reproduces_the_runs_own_test_predictions(isolated_home, tmp_path, capsys):
    """Two tiny runs; their test images exported as PNG files; `predict RUN_ID` on them gives the run's stored test
    predictions and its test accuracy: the files, the eval transform and the shared backbone add nothing."""
    from adaptertune import RunConfig, run, store
    from adaptertune.data.__main__ import main as data_main

    base = dict(dataset="fmnist_target", backbone="mini-s", pretrained=False, profile="smoke", epochs=1,
                warmup_epochs=0, batch_size=32, limit=64, train_eval_limit=64, log_every=1)
    adapter, head = RunConfig(method="adapter", rank=4, start=3, **base), RunConfig(method="head", **base)
    results = {cfg.method: run(cfg, verbose=False) for cfg in (adapter, head)}
    images = tmp_path / "images"
    assert data_main(["export", "fmnist_target", "--profile", "smoke", "--limit", "64", "--out", str(images)]) == 0
    assert "wrote 64 test image(s)" in capsys.readouterr().out
    out = tmp_path / "p.json"
    assert main(["predict", adapter.run_id, f"probe={head.run_id}", "--images", str(images), "--out", str(out),
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    rows = json.loads(out.read_text())["predictions"]
    names = results["adapter"]["dataset"]["class_names"]
    for task, cfg in (("fmnist_target", adapter), ("probe", head)):
        stored = store.load_predictions(cfg.run_id)["y_pred"]
        mine = {int(re.search(r"test_(\d+)", r["image"]).group(1)): r["pred"] for r in rows if r["task"] == task}
        assert len(mine) == 64 and mine == {i: names[k] for i, k in enumerate(stored)}, task
        acc = results[cfg.method]["metrics"]["test_acc"]
        assert f"{task}: accuracy {acc:.2%} ({round(acc * 64)}/64 labelled images)" in printed
