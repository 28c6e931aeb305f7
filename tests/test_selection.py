"""The learning-rate rule and successive halving: the rule's ties and divergences, the rung schedule's budget, the
pure halving on stored histories, and the prefix property that makes it exact (stop at epoch k, resume: the same
validation accuracy as the uninterrupted run at epoch k)."""
from __future__ import annotations

import math

import pytest

from adaptertune import RunConfig, run, store
from adaptertune.training import selection
from adaptertune.training.selection import best_rate, halving_choice, schedule

NAN = float("nan")


def test_the_rule_ties_go_to_the_smaller_rate_and_nan_never_wins():
    assert best_rate({1e-3: 0.8, 3e-3: 0.9, 1e-2: 0.9}) == 3e-3
    assert best_rate({1e-3: 0.8, 1e-1: NAN}) == 1e-3
    assert best_rate({1e-1: NAN}) is None
    assert selection.ranked({1e-2: 0.9, 1e-3: 0.9, 1e-1: NAN, 3e-2: 0.5}) == [1e-3, 1e-2, 3e-2, 1e-1]


@pytest.mark.parametrize("candidates,epochs", [(5, 5), (5, 15), (5, 20), (4, 50), (5, 50), (2, 1), (2, 5)])
def test_every_profile_schedule_stays_within_the_budget(candidates, epochs):
    plan = schedule(candidates, epochs)
    assert plan.overhead <= selection.DEFAULT_BUDGET and plan.overhead == pytest.approx(plan.cost - 1)
    if len(plan.rungs) == 1:
        assert plan.rungs[0] == selection.Rung(epochs, candidates)
    else:  # as many finalists as the budget allows: one more would not fit
        keep = plan.rungs[-1].keep
        assert plan.rungs[-1].epoch == epochs and selection.MIN_FINALISTS <= keep < candidates
        more = selection.Schedule(candidates, epochs, (plan.rungs[0], selection.Rung(epochs, keep + 1)))
        assert keep + 1 == candidates or more.overhead > selection.DEFAULT_BUDGET
    assert [r.epoch for r in plan.rungs] == sorted({r.epoch for r in plan.rungs})
    assert plan.rungs[0].keep == candidates


def test_the_mini_schedule_is_stated_from_the_rungs():
    plan = schedule(5, 5)
    assert [(r.epoch, r.keep) for r in plan.rungs] == [(1, 5), (5, 3)]
    assert plan.epochs_trained == 5 * 1 + 3 * 4 and plan.cost == pytest.approx(3.4)
    assert plan.overhead == pytest.approx(2.4) and "2.40x beyond the final run" in plan.describe()
    assert [(r.epoch, r.keep) for r in schedule(4, 20).rungs] == [(4, 4), (20, 3)]
    # a smaller budget buys fewer finalists, never fewer than two
    assert [(r.epoch, r.keep) for r in schedule(4, 20, budget=1.5).rungs] == [(4, 4), (20, 2)]
    with pytest.raises(ValueError, match="1.60 full runs beyond the final one"):
        schedule(5, 5, budget=1.5)


def test_a_schedule_over_budget_is_refused():
    with pytest.raises(ValueError, match="3.00 full runs beyond the final one.*over the budget of 2.5: a budget of at "
                                         "least 3 allows it"):
        schedule(12, 5)
    assert schedule(12, 5, budget=3).overhead == 3.0  # the budget the message names is enough
    with pytest.raises(ValueError, match="budget=0"):
        schedule(5, 5, budget=0)


def test_halving_eliminates_at_the_first_rung_and_decides_between_finalists_at_full_length():
    histories = {1e-3: [.45, .6, .7, .8, .95],  # a slow starter halving drops at the first rung
                 3e-3: [.6, .7, .8, .85, .86],
                 1e-2: [.55, .75, .7, .7, .90],  # looks worse mid-run; the full-length comparison decides
                 3e-2: [.5, .5, .6, .7, .8], 1e-1: [.2]}
    h = halving_choice(histories, 5)  # 5 rates of 5 epochs: 3 finalists within the default budget
    assert set(h.scores[1]) == set(histories) and set(h.scores[5]) == {3e-3, 1e-2, 3e-2}
    assert h.lr == 1e-2 and h.margin == (pytest.approx(0.04), 5)
    tie = halving_choice({**histories, 1e-2: [.55, .75, .7, .7, .86]}, 5)
    assert tie.lr == 3e-3  # a tie at full length goes to the smaller rate


def test_diverged_candidates_never_survive():
    histories = {1e-3: [.5, .6, .7, .8, .82], 1e-2: [.9, .9, NAN, NAN, NAN], 1e-1: [.95]}  # 1e-1 diverged in epoch 2
    h = halving_choice(histories, 5, budget=3)
    assert h.lr == 1e-3 and math.isnan(h.last_scores[1e-2])
    with pytest.raises(ValueError, match="every candidate rate diverged"):
        halving_choice({1e-3: [NAN], 1e-2: []}, 1)


def _config(lr: float = 3e-3) -> RunConfig:
    return RunConfig(dataset="digits", backbone="mini-s", method="adapter", pretrained=False, profile="smoke", epochs=3,
                     warmup_epochs=1, batch_size=64, limit=192, log_every=3, train_eval_limit=64, lr=lr)


@pytest.mark.slow
def test_a_rung_is_a_prefix_of_the_full_run(isolated_home):
    cfg = _config()
    reference = store.load_metrics(run(cfg, root=isolated_home / "reference", verbose=False)["run_id"],
                                   isolated_home / "reference")
    partial = run(cfg, verbose=False, stop_after=1)
    assert partial["epochs_done"] == 1 and store.run_status(cfg.run_id) == "running"
    assert partial["history"][0]["val_acc"] == reference["val_acc"].iloc[0]
    finished = run(cfg, verbose=False)
    assert finished["status"] == "finished" and finished["resumed_from"] == [1]
    assert store.load_metrics(cfg.run_id)["val_acc"].tolist() == reference["val_acc"].tolist()


@pytest.mark.slow
def test_run_halving_goes_through_the_store_and_is_cached(isolated_home):
    rates = (1e-3, 1e-2, 1e-1)
    configs = [_config(lr) for lr in rates]
    lines: list[str] = []
    h, _ = selection.run_halving(configs, verbose=False, log=lines.append, budget=2.5)
    assert [(r.epoch, r.keep) for r in h.plan.rungs] == [(1, 3), (3, 2)] and len(lines) == 3 + 2
    finalists = set(h.scores[3])
    assert len(finalists) == 2 and h.lr in finalists
    for lr, cfg in zip(rates, configs):  # finalists finish; the eliminated rate stays a stopped prefix
        assert store.run_status(cfg.run_id) == ("finished" if lr in finalists else "running")
    again, _ = selection.run_halving(configs, verbose=False, log=lambda s: None)
    assert again.lr == h.lr and again.scores == h.scores
    with pytest.raises(ValueError, match="differ only in lr"):
        selection.run_halving([configs[0], configs[1].with_(seed=1)], log=lambda s: None)


def test_stop_after_is_validated():
    with pytest.raises(ValueError, match="stop_after=0"):
        run(_config(), stop_after=0)


def test_a_proxy_schedule_counts_the_finalists_full_runs_and_fits_the_budget():
    plan = schedule(7, 5, proxy=True)  # mini adapter: 7 one-epoch proxies, the best two as full runs
    assert [(r.epoch, r.keep) for r in plan.rungs] == [(1, 7), (5, 2)] and plan.proxy
    assert plan.epochs_trained == 7 * 1 + 2 * 5 and plan.overhead == pytest.approx(2.4)
    assert "7 1-epoch proxy runs, the best 2 as full runs" in plan.describe()
    three = selection.Schedule(7, 5, (selection.Rung(1, 7), selection.Rung(5, 3)), proxy=True)
    assert three.overhead > selection.DEFAULT_BUDGET  # a third finalist does not fit: two it is
    assert schedule(4, 20, proxy=True).rungs[-1].keep == 2  # where the prefix rule affords three


def test_a_proxy_is_the_runs_first_fifth_with_its_own_schedule_and_no_test_evaluation():
    cfg = _config().with_(epochs=15, warmup_epochs=1)
    proxy = selection.proxy_config(cfg, 3)
    assert (proxy.epochs, proxy.warmup_epochs, proxy.final_eval) == (3, 0.2, False)
    assert proxy.with_(epochs=15, warmup_epochs=1, final_eval=True).run_id == cfg.run_id  # only those three differ
    assert proxy.run_id != cfg.run_id and "final_eval" not in cfg.semantic_dict()
    assert [p.epochs for p in selection.proxy_configs([cfg, cfg.with_(lr=1e-2), cfg.with_(lr=1e-1)])] == [3, 3, 3]
    assert selection.proxy_configs([cfg, cfg.with_(lr=1e-2)]) == []  # two candidates: both train fully
    with pytest.raises(ValueError, match="1 <= epochs <= 15"):
        selection.proxy_config(cfg, 16)
    with pytest.raises(ValueError, match="final_eval='no'"):
        cfg.with_(final_eval="no")


def test_proxies_pick_the_finalists_and_full_length_decides():
    histories = {1e-3: [.5, .6, .7, .8, .95], 3e-3: [.6, .7, .8, .85, .86], 1e-2: [.2, .3, .5, .7, .90],
                 3e-2: [.5, .5, .6, .7, .8], 1e-1: [.2]}
    proxies = {1e-3: .4, 3e-3: .7, 1e-2: .75, 3e-2: .6, 1e-1: NAN}  # 1e-2 scored after its decay, not at its peak
    h = halving_choice(histories, 5, proxies=proxies)
    assert h.plan.proxy and set(h.scores[1]) == set(histories) and set(h.scores[5]) == {1e-2, 3e-3}
    assert h.lr == 1e-2 and h.scores[1][1e-2] == .75
    assert halving_choice(histories, 5).lr == 1e-3  # the prefix rule keeps three and lets the slow starter win


@pytest.mark.slow
def test_run_halving_with_proxies_trains_short_validation_only_runs_then_full_finalists(isolated_home):
    rates = (1e-3, 1e-2, 1e-1)
    configs = [_config(lr).with_(epochs=5) for lr in rates]
    lines: list[str] = []
    h, _ = selection.run_halving(configs, verbose=False, log=lines.append, proxy=True)
    assert [(r.epoch, r.keep) for r in h.plan.rungs] == [(1, 3), (5, 2)] and len(lines) == 3 + 2
    assert sum("1-epoch proxy" in line for line in lines) == 3
    for cfg in configs:
        proxy = store.read_result(selection.proxy_config(cfg, 1).run_id)
        assert proxy["status"] == "finished" and proxy["metrics"]["test_acc"] is None
        assert not (store.run_path(proxy["run_id"]) / store.PREDICTIONS_FILE).exists()
        assert store.run_status(cfg.run_id) == ("finished" if cfg.lr in h.scores[5] else "missing")
    again, _ = selection.run_halving(configs, verbose=False, log=lambda s: None, proxy=True)
    assert again.lr == h.lr and again.scores == h.scores
