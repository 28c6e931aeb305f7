"""MultiTask: one frozen backbone, many adapter files. Mixed batches equal the single-task models within the stated
tolerance (batched mode, the default) or bit for bit on CPU (exact mode), forward_all equals them bit for bit,
shared blocks run once, tasks come and go without touching the others, and every bad input is one clear error."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from adaptertune import MultiTask, create_backbone, multitask, prepare, save_adapters
from adaptertune.inject import transformer_blocks
from adaptertune.multitask import BATCHED_ATOL, BATCHED_RTOL, MODES
from helpers import perturb_trainable

# name -> (classes, method, adapter options): heads of different sizes, every placement the library has
SPECS = {
    "pets": (5, "adapter", {"rank": 8}),
    "flowers": (10, "adapter", {"rank": 4, "start": 3}),
    "food": (3, "head", {}),
    "cars": (7, "adapter", {"rank": 2, "every": 2, "start": 1}),
}


def bare_backbone(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return create_backbone("mini-s", 1, pretrained=False).eval()


def task_model(backbone: nn.Module, classes: int, method: str, seed: int, **options) -> nn.Module:
    """A single-task model on ``backbone``'s weights with 'trained' (perturbed) adapters and head."""
    model = create_backbone("mini-s", classes, pretrained=False)
    model.load_state_dict({k: v for k, v in backbone.state_dict().items() if not k.startswith("head.")}, strict=False)
    torch.manual_seed(seed)
    prepare(model, method, **options)
    return perturb_trainable(model).eval()


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """The backbone, each task's single-task model and its adapter file."""
    tmp = tmp_path_factory.mktemp("zoo")
    backbone = bare_backbone()
    models, files = {}, {}
    for seed, (name, (classes, method, options)) in enumerate(SPECS.items(), 1):
        models[name] = task_model(backbone, classes, method, seed, **options)
        files[name] = save_adapters(models[name], tmp / f"{name}.safetensors",
                                    class_names=[f"{name}-{i}" for i in range(classes)])
    return backbone, models, files


def images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def assert_matches(got: torch.Tensor, ref: torch.Tensor, mode: str, what: str) -> None:
    """Exact mode: bit for bit. Batched mode: within the stated tolerance, and the same predicted class."""
    assert got.shape == ref.shape, what
    if mode == "exact":
        assert torch.equal(got, ref), what
    else:
        torch.testing.assert_close(got, ref, rtol=BATCHED_RTOL, atol=BATCHED_ATOL, msg=what)
        assert torch.equal(got.argmax(1), ref.argmax(1)), what


def check_mixed_batch(mt: MultiTask, models: dict[str, nn.Module], x: torch.Tensor, order: torch.Tensor, mode: str) -> None:
    """Every image's logits against its task's single-task model on that task's images, given as names,
    indices and a tensor."""
    names = list(mt.task_names)
    for tasks in ([names[i] for i in order.tolist()], order.tolist(), order):
        with torch.no_grad():
            out = mt(x, tasks, mode=mode)
        assert len(out) == len(x)
        for k, name in enumerate(names):
            rows = (order == k).nonzero().flatten()
            with torch.no_grad():
                ref = models[name](x[rows])
            assert_matches(torch.stack([out[i] for i in rows.tolist()]), ref, mode, name)


@pytest.mark.parametrize("mode", MODES)
def test_mixed_batch_equals_each_single_task_model(zoo, mode):
    """Heads of 5, 10, 3 and 7 classes; adapters of ranks 8, 4 and 2 from blocks 0, 3 and 1, every 1 or 2 blocks."""
    backbone, models, files = zoo
    check_mixed_batch(MultiTask(backbone, files), models, images(20),
                      torch.randperm(20, generator=torch.Generator().manual_seed(1)) % len(SPECS), mode)


def test_batched_is_the_default_mode_and_modes_are_checked(zoo):
    backbone, _, files = zoo
    mt = MultiTask(backbone, files)
    x, tasks = images(6), [3, 0, 1, 0, 2, 3]
    with torch.no_grad():
        default, batched = mt(x, tasks), mt(x, tasks, mode="batched")
    assert all(torch.equal(a, b) for a, b in zip(default, batched))
    with pytest.raises(ValueError, match=r"mode='fast' is not allowed: choose one of \('batched', 'exact'\)"):
        mt(x, tasks, mode="fast")


@pytest.fixture(scope="module")
def same_rank_zoo(tmp_path_factory):
    """Rank-4 tasks with different starts, strides and scales, and one rank-8 task: at some blocks the rank-4 tasks
    adapted there are neighbours in task order (their rows one slice), at others not (rows by index)."""
    tmp = tmp_path_factory.mktemp("same_rank")
    backbone = bare_backbone()
    specs = {"a": (4, {"rank": 4}), "c": (3, {"rank": 4, "every": 2, "scale": 0.5}), "d": (5, {"rank": 4, "start": 1}),
             "e": (2, {"rank": 4, "start": 1}), "b": (6, {"rank": 8, "start": 2})}
    models = {n: task_model(backbone, classes, "adapter", 10 + k, **options)
              for k, (n, (classes, options)) in enumerate(specs.items())}
    return backbone, models, {n: save_adapters(m, tmp / f"{n}.safetensors") for n, m in models.items()}


@pytest.mark.parametrize("mode", MODES)
def test_tasks_sharing_a_rank_equal_their_single_task_models(same_rank_zoo, mode, monkeypatch):
    backbone, models, files = same_rank_zoo
    groups: list[int] = []
    grouped = multitask.grouped_residual
    monkeypatch.setattr(multitask, "grouped_residual", lambda a, h, w: groups.append(len(a)) or grouped(a, h, w))
    order = torch.randperm(23, generator=torch.Generator().manual_seed(2)) % len(files)
    check_mixed_batch(MultiTask(backbone, files), models, images(23, seed=4), order, mode)
    if mode == "batched":  # one product per block for the rank-4 tasks adapted there: a+c, a+d+e, a+c+d+e, ...
        assert groups and max(groups) == 4 and len(groups) == 3 * len(transformer_blocks(backbone))
    else:
        assert groups == []


def test_batched_mode_passes_input_gradients(zoo):
    """Adapters add their residual in place; autograd still gives the exact mode's input gradients."""
    backbone, _, files = zoo
    mt = MultiTask(backbone, files)
    grads = {}
    for mode in MODES:
        x = images(8).requires_grad_(True)
        torch.stack([o.sum() for o in mt(x, [0, 1, 2, 3, 3, 2, 1, 0], mode=mode)]).sum().backward()
        grads[mode] = x.grad
    torch.testing.assert_close(grads["batched"], grads["exact"], rtol=BATCHED_RTOL, atol=BATCHED_ATOL)


def test_one_task_for_all_images(zoo):
    backbone, models, files = zoo
    mt = MultiTask(backbone, files)
    x = images(6)
    with torch.no_grad():
        for mode in MODES:
            assert_matches(torch.stack(mt(x, "flowers", mode=mode)), models["flowers"](x), mode, "flowers")
            assert_matches(torch.stack(mt(x, 0, mode=mode)), models["pets"](x), mode, "pets")
            assert_matches(torch.stack(mt(x, np.int64(2), mode=mode)), models["food"](x), mode, "food")  # numpy index


def test_forward_all_equals_single_task_models_on_the_whole_batch(zoo):
    backbone, models, files = zoo
    mt = MultiTask(backbone, files)
    x = images(9, seed=3)
    with torch.no_grad():
        out = mt.forward_all(x)
        assert list(out) == list(SPECS)
        for name, model in models.items():
            assert torch.equal(out[name], model(x)), name
        assert list(mt.forward_all(x, ["food", "pets"])) == ["food", "pets"]


def block_rows(mt: MultiTask) -> tuple[list[int], list]:
    """Images passed through each block, summed over calls (forward pre-hooks on the shared blocks)."""
    rows = [0] * len(transformer_blocks(mt.backbone))
    handles = [b.register_forward_pre_hook(lambda m, a, i=i: rows.__setitem__(i, rows[i] + a[0].shape[0]))
               for i, b in enumerate(transformer_blocks(mt.backbone))]
    return rows, handles


def test_forward_all_computes_blocks_below_start_once(tmp_path):
    """Four tasks with start = L/2: one shared prefix (blocks 0..start, the first adapted block's frozen part
    included) plus one suffix per task, as BlockCost says; a separate pass per task would cost 4 × L."""
    backbone = bare_backbone()
    depth = len(transformer_blocks(backbone))
    files = {f"t{k}": save_adapters(task_model(backbone, 4, "adapter", k, rank=4, start=depth // 2),
                                    tmp_path / f"t{k}.safetensors") for k in range(4)}
    mt = MultiTask(backbone, files)
    rows, handles = block_rows(mt)
    with torch.no_grad():
        mt.forward_all(images(5))
    for h in handles:
        h.remove()
    start = depth // 2
    assert rows == [5] * (start + 1) + [5 * 4] * (depth - start - 1)
    cost = mt.cost()
    assert cost.shared == start + 1 and cost.per_task == {f"t{k}": depth - start - 1 for k in range(4)}
    assert cost.total * 5 == sum(rows) and cost.separate == 4 * depth
    assert cost.fraction == pytest.approx((start + 1 + 4 * (depth - start - 1)) / (4 * depth))


@pytest.mark.parametrize("mode", MODES)
def test_mixed_batch_passes_each_image_through_each_block_once(zoo, mode):
    backbone, _, files = zoo
    mt = MultiTask(backbone, files)
    rows, handles = block_rows(mt)
    with torch.no_grad():
        mt(images(12), [i % 4 for i in range(12)], mode=mode)
    for h in handles:
        h.remove()
    assert rows == [12] * len(rows)


def test_adding_or_removing_a_task_leaves_the_others_untouched(zoo):
    backbone, models, files = zoo
    mt = MultiTask(backbone, {k: files[k] for k in ("pets", "flowers")})
    x = images(7)
    with torch.no_grad():
        before = mt.forward_all(x)
    tensors = {k: v for k, v in mt.state_dict().items()}
    mt.add_task("cars", files["cars"])
    mt.remove_task("pets")
    assert mt.task_names == ("flowers", "cars")
    for k, v in mt.state_dict().items():
        if k.startswith("tasks_.flowers.") or k.startswith("backbone."):
            assert v.data_ptr() == tensors[k].data_ptr() and torch.equal(v, tensors[k]), k
    with torch.no_grad():
        after = mt.forward_all(x)
        assert torch.equal(after["flowers"], before["flowers"])
        assert torch.equal(after["cars"], models["cars"](x))
    with pytest.raises(ValueError, match="unknown task 'pets'"):
        mt.remove_task("pets")


def test_memory_grows_by_the_task_tensors_only(zoo):
    backbone, _, files = zoo
    mt = MultiTask(backbone)
    base = sum(p.numel() * p.element_size() for p in mt.parameters())
    grown = 0
    for name, path in files.items():
        info = mt.add_task(name, path)
        with safe_open(str(path), "pt") as f:
            file_bytes = sum(f.get_tensor(k).numel() * 4 for k in f.keys())
        assert info.nbytes == file_bytes
        grown += file_bytes
        assert sum(p.numel() * p.element_size() for p in mt.parameters()) == base + grown


def test_unknown_task_names_and_indices_are_errors(zoo):
    backbone, _, files = zoo
    mt = MultiTask(backbone, files)
    x = images(3)
    with pytest.raises(ValueError, match=r"unknown task 'dogs': this model has tasks \['pets', 'flowers', 'food', 'cars'\]"):
        mt(x, ["pets", "dogs", "food"])
    with pytest.raises(ValueError, match="unknown task index 4"):
        mt(x, [0, 1, 4])
    with pytest.raises(ValueError, match="unknown task index True"):
        mt(x, [0, True, 1])
    with pytest.raises(ValueError, match="2 task labels for 3 images"):
        mt(x, ["pets", "food"])
    with pytest.raises(ValueError, match="1-D integer"):
        mt(x, torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="unknown task 'dogs'"):
        mt.forward_all(x, ["dogs"])
    with pytest.raises(ValueError, match="no tasks"):
        MultiTask(backbone)(x, 0)


def test_images_of_another_size_are_an_error(zoo):
    backbone, _, files = zoo
    mt = MultiTask(backbone, files)
    with pytest.raises(ValueError, match=r"expected \(B, 1, 28, 28\)"):
        mt(torch.randn(2, 3, 28, 28), "pets")
    with pytest.raises(ValueError, match=r"expected \(B, 1, 28, 28\)"):
        mt.forward_all(torch.randn(1, 28, 28))


def test_file_from_another_backbone_is_refused(zoo, tmp_path):
    backbone, _, files = zoo
    other = bare_backbone(seed=5)
    alien = save_adapters(task_model(other, 5, "adapter", 1, rank=8), tmp_path / "alien.safetensors")
    mt = MultiTask(backbone, {"pets": files["pets"]})
    with pytest.raises(ValueError, match="alien.safetensors was trained on another backbone"):
        mt.add_task("alien", alien)
    assert mt.task_names == ("pets",)
    with pytest.raises(ValueError, match="another backbone"):
        MultiTask(other, files)


def test_duplicate_and_malformed_task_names_are_errors(zoo):
    backbone, _, files = zoo
    with pytest.raises(ValueError, match=r"duplicate task names \['pets'\]"):
        MultiTask(backbone, [("pets", files["pets"]), ("pets", files["food"])])
    mt = MultiTask(backbone, {"pets": files["pets"]})
    with pytest.raises(ValueError, match="duplicate task name 'pets'"):
        mt.add_task("pets", files["food"])
    for bad in ("a.b", "", "-x", "keys", "items", 3):
        with pytest.raises(ValueError, match="is not allowed"):
            mt.add_task(bad, files["food"])
    assert mt.task_names == ("pets",)


def test_mismatched_input_configs_are_errors(zoo, tmp_path):
    backbone, models, files = zoo
    cfg = {"input_size": (1, 28, 28), "mean": (0.286,), "std": (0.353,), "crop_pct": 1.0, "interpolation": "bilinear"}
    bigger = save_adapters(models["pets"], tmp_path / "big.safetensors", data_config={**cfg, "input_size": (1, 32, 32)})
    shifted = save_adapters(models["pets"], tmp_path / "mean.safetensors", data_config={**cfg, "mean": (0.5,)})
    bicubic = save_adapters(models["pets"], tmp_path / "bicubic.safetensors", data_config={**cfg, "interpolation": "bicubic"})
    mt = MultiTask(backbone, {"food": files["food"]})
    with pytest.raises(ValueError, match=r"trained with input_size=\[1, 32, 32\] but the backbone takes input_size=\[1, 28, 28\]"):
        mt.add_task("big", bigger)
    with pytest.raises(ValueError, match=r"mean=\[0.5\]"):
        mt.add_task("mean", shifted)
    with pytest.raises(ValueError, match="another input config than task 'food'.*interpolation"):
        mt.add_task("bicubic", bicubic)
    assert mt.task_names == ("food",)
    alone = MultiTask(backbone, {"bicubic": bicubic})  # on its own it is fine: the transform follows the file
    assert alone.data_config["interpolation"] == "bicubic"


def test_backbone_must_be_a_bare_vit(zoo):
    backbone, models, files = zoo
    with pytest.raises(ValueError, match="bare backbone"):
        MultiTask(models["pets"], files)
    with pytest.raises(ValueError, match="needs a timm VisionTransformer"):
        MultiTask(nn.Linear(3, 3), files)


def test_inference_only(zoo):
    backbone, _, files = zoo
    mt = MultiTask(backbone, files)
    assert not any(m.training for m in mt.modules())  # from construction on, as documented
    mt.train()
    assert not any(m.training for m in mt.modules())
    assert not any(p.requires_grad for p in mt.parameters())


def test_old_files_without_data_config_or_class_names_still_load(zoo, tmp_path):
    """Files written before the data config was recorded: the backbone's own config is what training used."""
    backbone, models, files = zoo
    path = files["pets"]
    with safe_open(str(path), "pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    del meta["data_config"]
    meta["class_names"] = json.dumps(None)
    old = tmp_path / "old.safetensors"
    save_file(tensors, str(old), metadata=meta)
    mt = MultiTask(backbone, {"old": old})
    info = mt.task("old")
    assert info.data_config_source == "backbone" and info.class_names is None
    assert info.data_config == mt.task("old").data_config and info.data_config["input_size"] == [1, 28, 28]
    with torch.no_grad():
        assert torch.equal(mt.forward_all(images(2))["old"], models["pets"](images(2)))
    named = MultiTask(backbone, {"old": old}, class_names={"old": list("abcde")})
    assert named.task("old").class_names == list("abcde")
    with pytest.raises(ValueError, match="3 class names for a head with 5 outputs"):
        MultiTask(backbone, {"old": old}, class_names={"old": list("abc")})


@pytest.mark.slow
def test_batched_tolerance_holds_on_a_vit_s16_sized_model(tmp_path):
    """The tolerance was set on ViT-S/16 too (width 384, 12 blocks, 197 tokens): random weights, two rank-16 tasks
    (one grouped product per block) and a depth-placed one, each within tolerance of its single-task model."""
    torch.manual_seed(0)
    backbone = create_backbone("vit-s16", 1, pretrained=False).eval()
    models, files = {}, {}
    for k, options in enumerate(({"rank": 16}, {"rank": 16}, {"rank": 8, "start": 6})):
        model = create_backbone("vit-s16", 3 + k, pretrained=False)
        model.load_state_dict({n: v for n, v in backbone.state_dict().items() if not n.startswith("head.")}, strict=False)
        torch.manual_seed(k + 1)
        prepare(model, "adapter", **options)
        perturb_trainable(model)
        models[f"t{k}"], files[f"t{k}"] = model.eval(), save_adapters(model, tmp_path / f"t{k}.safetensors")
    x = torch.randn(5, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    order = torch.tensor([2, 0, 1, 0, 2])
    with torch.no_grad():
        out = MultiTask(backbone, files)(x, order)
        for k, name in enumerate(files):
            rows = (order == k).nonzero().flatten()
            assert_matches(torch.stack([out[i] for i in rows.tolist()]), models[name](x[rows]), "batched", name)


def test_batched_mode_runs_under_autocast(same_rank_zoo):
    """bf16 autocast: adapter residuals come out in bf16 while the token stream stays fp32; both modes agree to
    bf16 rounding."""
    backbone, _, files = same_rank_zoo
    mt = MultiTask(backbone, files)
    x, tasks = images(10, seed=5), [0, 4, 1, 2, 3, 0, 1, 2, 3, 4]
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = {mode: mt(x, tasks, mode=mode) for mode in MODES}
    for a, b in zip(out["batched"], out["exact"]):
        torch.testing.assert_close(a.float(), b.float(), rtol=0.05, atol=0.05)
