"""Training loop: config validation, determinism, learning, freezing, NaN stop, linear probe, compile fallback."""
from __future__ import annotations


import pytest
import torch

from adaptertune import RunConfig, run
from adaptertune import store
from adaptertune.training.loop import NonFiniteLossError, lr_at


def tiny(**changes) -> RunConfig:
    """A run of a few seconds: sklearn digits, random-init mini-s, smoke profile."""
    base = dict(dataset="digits", backbone="mini-s", method="adapter", pretrained=False, profile="smoke", epochs=2,
                warmup_epochs=1, batch_size=64, limit=400, log_every=2, train_eval_limit=200)
    return RunConfig(**{**base, **changes})


def _comparable(rows: list[dict]) -> list[dict]:
    timing = {"seconds", "train_seconds", "images_per_s"}
    return [{k: v for k, v in r.items() if k not in timing} for r in rows]


# -- config -----------------------------------------------------------------------------------------


def test_schedule_warms_up_linearly_then_decays_by_cosine_per_step():
    lrs = [lr_at(s, 1.0, 10, 100) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:])) and lrs[-1] < 1e-3
    assert lr_at(0, 1.0, 0, 10) == pytest.approx(1.0)


# -- training -----------------------------------------------------------------------------------------
def test_same_config_and_seed_give_identical_metrics(isolated_home):
    cfg = tiny(epochs=2)
    a = run(cfg, root=isolated_home / "a", verbose=False)
    b = run(cfg, root=isolated_home / "b", verbose=False)
    assert a["metrics"]["test_acc"] == b["metrics"]["test_acc"]
    assert a["metrics"]["test_loss"] == b["metrics"]["test_loss"]
    ma = store.load_metrics(cfg.run_id, isolated_home / "a").to_dict("records")
    mb = store.load_metrics(cfg.run_id, isolated_home / "b").to_dict("records")
    assert _comparable(ma) == _comparable(mb)
    assert store.load_steps(cfg.run_id, isolated_home / "a").equals(store.load_steps(cfg.run_id, isolated_home / "b"))
    other = run(tiny(epochs=2, seed=1), root=isolated_home / "a", verbose=False)
    assert other["metrics"]["test_loss"] != a["metrics"]["test_loss"]


def test_finished_run_is_returned_from_the_store(isolated_home, monkeypatch):
    cfg = tiny(epochs=1)
    first = run(cfg, verbose=False)
    import adaptertune.training.run as train

    monkeypatch.setattr(train._Run, "execute", lambda self: pytest.fail("a finished run must not train again"))
    assert run(cfg, verbose=False) == first


def test_loss_decreases_on_real_data(isolated_home):
    cfg = tiny(method="full", epochs=4, limit=1000, batch_size=32, augment=False)  # a ViT from scratch: no aug, more steps
    result = run(cfg, verbose=False)
    metrics = store.load_metrics(cfg.run_id)
    assert list(metrics["epoch"]) == [1, 2, 3, 4]
    assert metrics["train_loss"].iloc[-1] < metrics["train_loss"].iloc[0] - 0.2
    assert result["metrics"]["test_acc"] > 0.2  # 10 classes: chance is 0.1
    assert set(metrics.columns) >= {"train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "images_per_s"}


@pytest.mark.parametrize("method", ["adapter", "head"])
def test_only_adapters_and_head_change(isolated_home, method):
    from adaptertune.training.run import build_model_and_data

    cfg = tiny(method=method, epochs=1, lr=1e-2)
    run(cfg, verbose=False)
    initial, _ = build_model_and_data(cfg)
    trained = store.load_model(cfg.run_id)
    before, after = initial.state_dict(), trained.state_dict()
    assert before.keys() == after.keys()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    allowed = {k for k in before if k.startswith("head.") or (method == "adapter" and ".adapter." in k)}
    assert changed and changed <= allowed
    assert any(k.startswith("head.") for k in changed)
    if method == "adapter":
        assert any(".adapter.up." in k for k in changed)


def test_nan_loss_stops_the_run_and_is_recorded(isolated_home):
    cfg = tiny(lr=1e30, warmup_epochs=0, epochs=2)
    with pytest.raises(NonFiniteLossError, match="training loss became"):
        run(cfg, verbose=False)
    result = store.read_result(cfg.run_id)
    assert result["status"] == "failed" and "NonFiniteLossError" in result["error"]
    assert (store.run_path(cfg.run_id) / "config.json").is_file()
    assert store.load_results().empty and len(store.load_results(status="failed")) == 1


def test_linear_probe_on_cached_features(isolated_home):
    cfg = tiny(method="head", head_mode="cached_features", epochs=2, lr=1e-2)
    result = run(cfg, verbose=False)
    assert result["config"]["head_mode"] == "cached_features"
    assert result["params"]["trainable"] == 64 * 10 + 10
    assert 0.0 <= result["metrics"]["train_eval_acc"] <= 1.0


def test_compile_failure_falls_back_to_eager_with_a_message(isolated_home, monkeypatch, capsys):
    cfg = tiny(epochs=1)
    eager = run(cfg, root=isolated_home / "eager", verbose=False)

    def broken(module, *args, **kwargs):
        def fail(*a, **k):
            raise RuntimeError("no compiler here")
        return fail

    monkeypatch.setattr(torch, "compile", broken)
    compiled = run(tiny(epochs=1, compile=True), root=isolated_home / "compiled", verbose=False)
    assert "torch.compile failed" in capsys.readouterr().err
    assert compiled["compiled"] is False
    assert compiled["metrics"]["test_loss"] == eager["metrics"]["test_loss"]


def _backward_fails_to_compile():
    """A torch.compile backend whose forward compiles and whose backward fails, when autograd first needs it."""
    from torch._dynamo.backends.common import aot_autograd

    def forward(gm, _example_inputs):
        return gm

    def backward(_gm, _example_inputs):
        raise RuntimeError("no backward compiler here")

    return aot_autograd(fw_compiler=forward, bw_compiler=backward)


def test_a_backward_that_fails_to_compile_falls_back_before_the_step(isolated_home, monkeypatch, capsys):
    from adaptertune.training.loop import CompiledForward

    cfg = tiny(epochs=2)
    eager = run(cfg, root=isolated_home / "eager", verbose=False)
    note = CompiledForward.__init__.__defaults__[1]
    monkeypatch.setattr(CompiledForward.__init__, "__defaults__", (_backward_fails_to_compile(), note))
    compiled = run(cfg.with_(compile=True), root=isolated_home / "compiled", verbose=False)
    assert "no backward compiler here" in capsys.readouterr().err
    assert compiled["status"] == "finished" and compiled["compiled"] is False
    assert compiled["metrics"]["test_loss"] == eager["metrics"]["test_loss"]


def test_a_compiled_forward_and_backward_are_checked_once_per_input_shape():
    import adaptertune as at
    from adaptertune.training.loop import CompiledForward

    torch.manual_seed(0)
    model = torch.nn.Sequential(at.prepare(at.create_backbone("mini-s", 5, pretrained=False), "adapter"),
                                torch.nn.Dropout(0.5))  # draws from the random state on every forward
    compiled = CompiledForward(model, True, backend="aot_eager")
    after = []
    for batch in (4, 4, 3, 3):
        x = torch.randn(batch, 1, 28, 28)
        torch.manual_seed(1)
        compiled(x).sum().backward()
        after.append(torch.random.get_rng_state())
    assert compiled.compiled is True and compiled._checked == {(4, 1, 28, 28), (3, 1, 28, 28)}
    # a checked call (the first of its shape) leaves the random state as a plain call does: the check draws nothing
    # a training step would see
    assert torch.equal(after[0], after[1]) and torch.equal(after[2], after[3])


def test_bf16_autocast_runs(isolated_home):
    result = run(tiny(precision="bf16", epochs=1), verbose=False)
    assert result["status"] == "finished" and result["config"]["precision"] == "bf16"


@pytest.mark.slow
def test_compiled_forward_keeps_adapters_after_a_head_only_model_was_compiled():
    """Dynamo skips module-hook guards by default, so an adapter model compiled after a head-only model of the
    same backbone reused the hook-less graph (adapters silently ignored). compile=True must not do that."""
    import adaptertune as at
    from adaptertune.inject import transformer_blocks
    from adaptertune.training.loop import CompiledForward

    torch.manual_seed(0)
    head = at.prepare(at.create_backbone("mini-s", 5, pretrained=False), "head")
    adapted = at.prepare(at.create_backbone("mini-s", 5, pretrained=False), "adapter")
    with torch.no_grad():
        for block in transformer_blocks(adapted):
            block.adapter.up.weight.normal_()  # non-zero adapters: dropping them changes the output
    x = torch.randn(4, 1, 28, 28)
    CompiledForward(head, True, backend="eager")(x)
    compiled = CompiledForward(adapted, True, backend="eager")
    assert compiled.compiled is True
    assert torch.allclose(compiled(x), adapted(x), atol=1e-5)
