"""Choosing a learning rate on validation: the one choice rule, and successive halving that applies it cheaply.

The rule (the tuned protocol's and ``fit``'s): the highest validation accuracy wins, ties go to the smaller rate, a
candidate whose loss diverged (NaN) is never chosen. Successive halving applies the same rule at *rungs*: every
candidate trains the first epochs of its full-length run (the same cosine schedule, so a rung is a prefix of the run,
stopped and later resumed by the store), and the best few (the finalists: as many as the budget allows, at least
two) train to the end, where the rule picks among them. A candidate's rung score is therefore exactly the full
run's validation accuracy after that epoch, and halving's choice can be recomputed from the per-epoch metrics of a
full grid (``halving_choice``) as well as run for real (``run_halving``).

Why finalists at full length, and as many as the budget allows: a prefix is scored mid-schedule, at the peak of the
cosine, where a high rate looks worse than it ends (it recovers while the rate anneals). Letting a prefix only
eliminate, never decide, keeps the winner's evidence the grid's own (full-length validation accuracy), and each extra
finalist is one fewer decision taken on a prefix. On the mini store a single survivor chosen at half the run missed
the grid's rate far more often than two finalists did, and two more often than three (``paper.halving``; the budget
default then allows three of four or five rates, two of six or seven). Both rules were set after seeing those cells,
so the halving table judges a rule tuned on them.

Proxy rungs (``proxy=True``, what ``fit`` uses): the first rung is not a prefix but a *proxy*, a short run of its own
(``FIRST_RUNG`` of the epochs, warm-up shrunk alike) whose cosine anneals to its end, so a high rate is scored after
its decay instead of at its peak, the bias the prefix rule suffers from. The finalists then train full runs from the
start. Costlier in epochs (a finalist's first epochs are trained twice), so the budget admits two finalists; proxies
skip the test evaluation (``RunConfig.final_eval``). The proxy was built to remove that stated bias, with the prefix
rule's share, finalists and budget unchanged; a pilot on the mini main cells was seen before ``fit`` adopted it, and
nothing in the rule changed after it (``paper.halving`` judges it).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..config import RunConfig
from ..store.runs import load_metrics, read_result

DIVERGED = "NonFiniteLossError"  # the error of a candidate whose loss blew up: a settled candidate, never chosen
FIRST_RUNG = 0.2  # every candidate trains this share of the run (rounded up, at least one epoch)
MIN_FINALISTS = 2  # at least this many train to the end (more while the budget allows); the rule picks among them
DEFAULT_BUDGET = 2.5  # what choosing the rate may cost beyond the final run (the winner's own run), in full-length runs


def best_rate(scores: Mapping[float, float]) -> float | None:
    """The rule: the rate with the highest score, ties to the smaller rate; NaN (diverged) never wins; None if none
    is finite."""
    finite = sorted(lr for lr, v in scores.items() if not math.isnan(v))
    if not finite:
        return None
    return max(finite, key=lambda lr: (scores[lr], -lr))


def ranked(scores: Mapping[float, float]) -> list[float]:
    """Rates best first by the rule (diverged last, in ascending rate)."""
    finite = sorted((lr for lr, v in scores.items() if not math.isnan(v)), key=lambda lr: (-scores[lr], lr))
    return finite + sorted(lr for lr, v in scores.items() if math.isnan(v))


@dataclass(frozen=True)
class Rung:
    epoch: int  # train every survivor up to this epoch (a prefix of its full run)
    keep: int  # how many candidates enter this rung


@dataclass(frozen=True)
class Schedule:
    """Successive halving for ``candidates`` rates of an ``epochs``-long run; ``cost`` is in full-length runs.
    ``proxy``: the first rung is a short run of its own, and the finalists train from the start."""

    candidates: int
    epochs: int
    rungs: tuple[Rung, ...]
    proxy: bool = False

    @property
    def epochs_trained(self) -> int:
        done, total = 0, 0
        for rung in self.rungs:
            total += rung.keep * (rung.epoch - done)
            done = 0 if self.proxy else rung.epoch
        return total

    @property
    def proxy_epochs(self) -> int | None:
        """The proxy runs' length (the first rung) when the first rung trains proxies; None when candidates run on."""
        return self.rungs[0].epoch if self.proxy and len(self.rungs) > 1 else None

    @property
    def cost(self) -> float:
        """Epochs trained over all candidates / the epochs of one full run (the winner's full run counted in)."""
        return self.epochs_trained / self.epochs

    @property
    def overhead(self) -> float:
        """What choosing costs beyond the final run: the winner's full run is the final adapter, trained anyway (the
        full grid's overhead is one full run per losing candidate)."""
        return self.cost - 1.0

    def describe(self) -> str:
        steps = ", ".join(f"{r.keep} to epoch {r.epoch}" for r in self.rungs)
        if self.proxy_epochs is not None:
            first, last = self.rungs
            steps = f"{first.keep} {first.epoch}-epoch proxy runs, the best {last.keep} as full runs"
        return (f"successive halving over {self.candidates} rates of a {self.epochs}-epoch run: {steps}; "
                f"{self.epochs_trained} epochs = {self.cost:.2f}x one full run, {self.overhead:.2f}x beyond the final "
                "run")


def schedule(candidates: int, epochs: int, budget: float = DEFAULT_BUDGET, proxy: bool = False) -> Schedule:
    """Every candidate to ``FIRST_RUNG`` of the run, then the best ones to the end: as many finalists as ``budget``
    allows (its overhead beyond the final run), at least ``MIN_FINALISTS``, fewer than all candidates.

    With the default budget: 5 rates of 5 epochs -> 5 to epoch 1, 3 to epoch 5 (17 epochs: 3.4 runs, 2.4 beyond the
    final one); 4 rates of 20 -> 4 to 4, 3 to 20 (3.2; 2.2). With proxies: 7 rates of 5 epochs -> 7 one-epoch
    proxies, 2 full runs (17 epochs: 3.4; 2.4). A run of one epoch, or two candidates or fewer: every candidate trains
    fully. Raises when even ``MIN_FINALISTS`` would exceed ``budget`` full runs beyond the final one.
    """
    if candidates < 1 or epochs < 1:
        raise ValueError(f"successive halving needs >= 1 candidate and >= 1 epoch (got {candidates}, {epochs})")
    if not budget > 0:
        raise ValueError(f"budget={budget!r} is not allowed: use a positive number of full-length runs")
    first = min(epochs, max(1, math.ceil(FIRST_RUNG * epochs - 1e-9)))
    if candidates <= MIN_FINALISTS or first >= epochs:
        plans = [Schedule(candidates, epochs, (Rung(epochs, candidates),))]
    else:
        plans = [Schedule(candidates, epochs, (Rung(first, candidates), Rung(epochs, keep)), proxy)
                 for keep in range(MIN_FINALISTS, candidates)]
    fitting = [plan for plan in plans if plan.overhead <= budget + 1e-9]
    if not fitting:
        plan = plans[0]
        raise ValueError(f"choosing among {candidates} rates of a {epochs}-epoch run costs {plan.overhead:.2f} full "
                         f"runs beyond the final one ({plan.describe()}), over the budget of {budget:g}: a budget "
                         f"of at least {math.ceil(plan.overhead * 100) / 100:g} allows it (or fewer candidate rates)")
    return fitting[-1]


@dataclass(frozen=True)
class Halving:
    """What successive halving saw: each candidate's score per rung epoch it reached, and the choice."""

    plan: Schedule
    scores: dict[int, dict[float, float]]  # rung epoch -> {rate: val acc after that epoch (NaN = diverged)}
    lr: float

    @property
    def last_scores(self) -> dict[float, float]:
        """Each candidate's last score (at the furthest rung it reached)."""
        out: dict[float, float] = {}
        for epoch in sorted(self.scores):
            out.update(self.scores[epoch])
        return out

    @property
    def margin(self) -> tuple[float, int]:
        """(winner − runner-up, epoch) at the last rung where at least two finite candidates were scored."""
        for epoch in sorted(self.scores, reverse=True):
            finite = {lr: v for lr, v in self.scores[epoch].items() if not math.isnan(v)}
            if len(finite) >= 2 and self.lr in finite:
                order = ranked(finite)
                return finite[order[0]] - finite[order[1]], epoch
        return float("inf"), self.plan.epochs


def _previous(scores: dict[int, dict[float, float]], epoch: int) -> list[float]:
    """Candidates not yet scored at ``epoch``, best first by the last rung that scored them (replacements)."""
    earlier = [e for e in sorted(scores) if e < epoch]
    if not earlier:
        return []
    last = scores[earlier[-1]]
    return [lr for lr in ranked(last) if not math.isnan(last[lr])]


def halve(plan: Schedule, rates: Sequence[float], score: Callable[[float, int], float]) -> Halving:
    """Run the plan: ``score(rate, epoch)`` trains (or reads) ``rate`` up to ``epoch`` and returns its validation
    accuracy after it (NaN when the loss diverged). The choice is the rule applied at the last rung. A survivor that
    diverges is replaced by the next-best candidate of the rung before (the only case that trains beyond the plan)."""
    if len(rates) != plan.candidates:
        raise ValueError(f"the schedule is for {plan.candidates} rates, got {len(rates)}: {list(rates)}")
    alive = sorted(float(r) for r in rates)
    scores: dict[int, dict[float, float]] = {}
    for rung in plan.rungs:
        scores[rung.epoch] = {}
        for lr in alive:  # best first; a survivor that diverges in this rung is replaced by the next one
            if sum(not math.isnan(v) for v in scores[rung.epoch].values()) >= rung.keep:
                break
            scores[rung.epoch][lr] = float(score(lr, rung.epoch))
        alive = [lr for lr in ranked(scores[rung.epoch]) if not math.isnan(scores[rung.epoch][lr])]
        alive += [lr for lr in _previous(scores, rung.epoch) if lr not in scores[rung.epoch]]
        if not alive:
            raise ValueError(f"every candidate rate diverged by epoch {rung.epoch} ({sorted(scores[rung.epoch])}): "
                             "try smaller rates")
    lr = best_rate(scores[plan.rungs[-1].epoch])
    assert lr is not None
    return Halving(plan, scores, lr)


def halving_choice(histories: Mapping[float, Sequence[float]], epochs: int, budget: float = DEFAULT_BUDGET,
                   proxies: Mapping[float, float] | None = None) -> Halving:
    """What halving would choose, from each rate's per-epoch validation accuracies of a full grid (a list of
    ``epochs`` values; a diverged run's list may stop early: its later epochs count as NaN) and, for the proxy rule,
    each rate's proxy score (its proxy run's last validation accuracy; NaN = diverged). Pure: no training."""
    plan = schedule(len(histories), epochs, budget, proxy=proxies is not None)

    def score(lr: float, epoch: int) -> float:
        if proxies is not None and epoch < epochs:
            return float(proxies[lr])
        history = histories[lr]
        return float(history[epoch - 1]) if len(history) >= epoch else float("nan")

    return halve(plan, list(histories), score)


@dataclass
class StoreScorer:
    """``score(rate, epoch)`` through the run store: ``train(rate, epoch)`` runs the rate's config up to ``epoch``
    (resuming what is stored) and returns its per-epoch validation accuracies, or raises on divergence."""

    train: Callable[[float, int], Sequence[float]]
    is_divergence: Callable[[BaseException], bool]
    seen: dict[float, list[float]] = field(default_factory=dict)

    def __call__(self, lr: float, epoch: int) -> float:
        try:
            history = list(self.train(lr, epoch))
        except Exception as err:  # noqa: BLE001 - only a divergence is a settled outcome; anything else propagates
            if not self.is_divergence(err):
                raise
            self.seen[lr] = []
            return float("nan")
        self.seen[lr] = history
        return float(history[epoch - 1]) if len(history) >= epoch else float("nan")


def proxy_config(cfg: RunConfig, epochs: int) -> RunConfig:
    """The proxy of ``cfg``: its first ``epochs`` as a run of their own (warm-up shrunk in proportion, so the cosine
    still warms up and anneals), scored on validation only."""
    if not 1 <= epochs <= cfg.epochs:
        raise ValueError(f"a proxy of a {cfg.epochs}-epoch run needs 1 <= epochs <= {cfg.epochs}, got {epochs}")
    return cfg.with_(epochs=epochs, warmup_epochs=round(cfg.warmup_epochs * epochs / cfg.epochs, 6), final_eval=False)


def proxy_configs(configs: Sequence[RunConfig], budget: float = DEFAULT_BUDGET) -> list[RunConfig]:
    """The proxy runs the proxy rule trains for these candidates (none when every candidate trains fully)."""
    epochs = schedule(len(configs), configs[0].epochs, budget, proxy=True).proxy_epochs
    return [] if epochs is None else [proxy_config(c, epochs) for c in configs]


def run_halving(configs: Sequence[RunConfig], *, budget: float = DEFAULT_BUDGET, root: str | Path | None = None,
                verbose: bool = True, log: Callable[[str], None] = print,
                proxy: bool = False) -> tuple[Halving, dict[float, list[float]]]:
    """Successive halving for real, through the run store: ``configs`` differ only in ``lr``; each rung trains its
    survivors up to the rung's epoch (resuming stored prefixes, reusing finished runs; with ``proxy``, the first rung
    trains each candidate's proxy run instead) and prints one line per candidate. Returns the halving and each
    candidate's per-epoch validation accuracies (a finalist's are its full run's)."""
    from .run import run  # the training floor's entry point (imported here: the rule above stays importable alone)

    by_lr = {float(c.lr): c for c in configs}
    if len(by_lr) != len(configs) or len({c.with_(lr=1.0).run_id for c in configs}) != 1:
        raise ValueError("run_halving needs configs that differ only in lr, one per rate")
    epochs = configs[0].epochs
    plan = schedule(len(configs), epochs, budget, proxy=proxy)

    def train(lr: float, epoch: int) -> list[float]:
        cfg = proxy_config(by_lr[lr], epoch) if epoch == plan.proxy_epochs else by_lr[lr]
        record = run(cfg, root=root, verbose=verbose, stop_after=None if epoch >= cfg.epochs else epoch)
        history = record.get("history")
        if history is None:  # a finished run: its per-epoch metrics are in the store
            history = load_metrics(cfg.run_id, root).to_dict("records")
        accs = [float(r["val_acc"]) for r in history]
        kind = f"{cfg.epochs}-epoch proxy" if cfg.epochs < epochs else f"epoch {epoch}/{epochs}"
        log(f"[{cfg.run_id}] lr {lr:g}: val acc {accs[epoch - 1]:.2%} after {kind}")
        return accs

    def diverged(err: BaseException) -> bool:
        return type(err).__name__ == DIVERGED

    scorer = StoreScorer(train, diverged)
    for cfg in configs:  # a rate that diverged before (its full run, or its proxy) is settled: never retrained
        tried = [cfg] + ([proxy_config(cfg, plan.proxy_epochs)] if plan.proxy_epochs is not None else [])
        for stored in (read_result(c.run_id, root) for c in tried):
            if stored and stored.get("status") == "failed" and str(stored.get("error", "")).startswith(DIVERGED):
                scorer.seen[float(cfg.lr)] = []

    def score(lr: float, epoch: int) -> float:
        if lr in scorer.seen and not scorer.seen[lr]:
            log(f"[{by_lr[lr].run_id}] lr {lr:g}: diverged (loss not finite), never chosen")
            return float("nan")
        value = scorer(lr, epoch)
        if math.isnan(value):
            log(f"[{by_lr[lr].run_id}] lr {lr:g}: diverged (loss not finite), never chosen")
        return value

    return halve(plan, list(by_lr), score), scorer.seen


__all__ = ["DEFAULT_BUDGET", "DIVERGED", "FIRST_RUNG", "MIN_FINALISTS", "Halving", "Rung", "Schedule", "StoreScorer",
           "best_rate", "halve", "halving_choice", "proxy_config", "proxy_configs", "ranked", "run_halving", "schedule"]
