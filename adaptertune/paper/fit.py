"""``fit(data, backbone)``: from a dataset (registered or an ImageFolder) to a well-tuned adapter file in one call.

The learning rate is chosen on the validation split by the tuned protocol's own rule and grid (``tuning.candidates``,
``training.selection``), applied by successive halving with proxy rungs (every candidate's short run with its own
schedule, then the best two as full runs) so the choice costs at most ``budget`` full runs beyond the final one; every
run goes through the run store (cached, resumable), so on a registered dataset with the protocol's recipe fit reuses
the tuned protocol's selection runs as its finalists. Then the other seeds train at the chosen rate, and fit writes
the adapter file unchanged (``predict`` and ``MultiTask`` read it as they read any run's) plus ``report.json`` and
``report.md``.
"""
from __future__ import annotations

import math
import shlex
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..adapter import AdapterConfig
from ..atomic import atomic_write_bytes
from ..config import RunConfig
from ..regimes import file_methods, regime
from ..store import runs as run_store
from ..training.run import run
from ..training.selection import DEFAULT_BUDGET, proxy_config, run_halving, schedule
from . import tuning
from .advisor import advise
from .protocols import protocol
from .userdata import check_selectable, dataset_name, default_profile

FIT_METHODS = file_methods()  # fit serves what an adapter file holds: not full FT


@dataclass(frozen=True)
class FitReport:
    """What fit did and what it got; ``to_dict`` is report.json, ``markdown`` is report.md."""

    dataset: str
    backbone: str
    method: str
    rank: int | None
    profile: str
    schedule: str
    cost_runs: float  # every candidate's epochs / one run's, the winner's (final) run included
    overhead_runs: float  # the same beyond the final run: what choosing the rate cost
    candidates: list[dict]
    lr: float
    at_grid_edge: bool  # the smallest or largest candidate won: the best rate may lie outside the grid
    margin_points: float | None  # None: the winner was alone at every rung it reached with a finite score
    margin_epoch: int
    seeds: list[dict]
    per_class: list[dict]
    trainable_params: int
    file_bytes: int
    adapter_file: str
    predict_command: str
    rank_advice: dict | None = None
    proxy_epochs: int | None = None  # the proxy runs' length (the first rung); None: every candidate ran fully
    val_images: int | None = None  # the validation split the choice was made on
    margin_noise_points: float | None = None  # binomial sd of one accuracy at the winner's level on that split

    @property
    def margin_within_noise(self) -> bool | None:
        """True when the margin is below the validation split's sampling sd: a split of the same size drawn again
        could have chosen the runner-up (a "best" has to beat the noise to mean more than a tie)."""
        if self.margin_points is None or self.margin_noise_points is None:
            return None
        return self.margin_points < self.margin_noise_points

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def test_acc(self) -> float | None:
        accs = [s["test_acc"] for s in self.seeds if s.get("test_acc") is not None]
        return float(np.mean(accs)) if accs else None

    def markdown(self) -> str:
        lines = [f"# fit: {self.method} on {self.dataset} with {self.backbone} ({self.profile} recipe)", "",
                 f"Learning rate chosen on validation: **{self.lr:g}** ({self.schedule})."
                 + (" It is at the edge of the grid: the best rate may lie outside it." if self.at_grid_edge else ""),
                 "",
                 "| lr | validation accuracy per rung | last rung | chosen |", "|---:|---|---:|:-:|"]
        for c in self.candidates:
            rungs = ", ".join(f"{e}-epoch proxy: {_pct(v)}" if e == self.proxy_epochs else f"e{e}: {_pct(v)}"
                              for e, v in c["val_acc"].items())
            lines.append(f"| {c['lr']:g} | {rungs} | {c['last_epoch']} | {'✓' if c['chosen'] else ''} |")
        margin = ("alone at its rung" if self.margin_points is None
                  else f"{self.margin_points:+.2f} points over the runner-up at epoch {self.margin_epoch}")
        lines += ["", f"Margin: {margin}."]
        if self.margin_within_noise is not None:
            lines[-1] += (f" The validation split's sampling sd of one accuracy at this level is "
                          f"{self.margin_noise_points:.2f} points ({self.val_images} images): the margin is "
                          + ("within it, so the choice is a tie with the runner-up, not a measured best."
                             if self.margin_within_noise else "beyond it."))
        if self.rank_advice:
            lines += [f"Rank: {self.rank} (advised: {self.rank_advice.get('summary', '')})."]
        lines += ["", "| seed | run | val acc | test acc |", "|---:|---|---:|---:|"]
        lines += [f"| {s['seed']} | {s['run_id']} | {_pct(s['val_acc'])} | {_pct(s['test_acc'])} |" for s in self.seeds]
        if self.test_acc is not None and self.per_class:
            lines += ["", f"Test accuracy {_pct(self.test_acc)} (mean over {len(self.seeds)} seed(s)); per class "
                      "(first seed):", "", "| class | n | accuracy | most often confused with |",
                      "|---|---:|---:|---|"]
            lines += [f"| {c['class']} | {c['n']} | {_pct(c['accuracy'])} | "
                      f"{c['confused_with'] + ' (' + str(c['confused_n']) + ')' if c['confused_with'] else '-'} |"
                      for c in self.per_class]
        lines += ["", f"{self.trainable_params:,} trainable parameters; adapter file `{Path(self.adapter_file).name}` "
                  f"{self.file_bytes:,} bytes.", "", "Use it:", "", "```bash", self.predict_command, "```"]
        return "\n".join(lines) + "\n"


def _finite(v: float) -> float | None:
    """JSON has no NaN or inf: a diverged score or a margin without a runner-up is null."""
    return None if math.isnan(v) or math.isinf(v) else float(v)


def _pct(v: float | None) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.2f}%"


def _json_safe(value):
    """``value`` with every NaN or infinity (nested in dicts and lists) as None: report.json stays strict JSON."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return _finite(value) if isinstance(value, float) else value


def _check_out(out: Path) -> None:
    """Refuse an output folder that cannot be made, before anything trains."""
    for place in (out, *out.parents):
        if place.exists():
            if not place.is_dir():
                raise ValueError(f"out={str(out)!r} is not allowed: {place} exists and is not a folder")
            return


def _predict_command(target: Path, record: dict, profile: str, root: str | Path | None) -> str:
    """The command that serves the result, quoted for a shell. A random-init backbone exists only in the run, so the
    command names the run (``predict`` rebuilds that backbone from the store) instead of the file."""
    pretrained = record["config"].get("pretrained", True)
    ref = str(target) if pretrained else record["run_id"]
    extra = ([] if pretrained or root is None else ["--root", str(root)]) + \
        (["--profile", "smoke"] if profile == "smoke" and pretrained else [])
    return shlex.join(["python", "-m", "adaptertune", "predict", ref, "--images", "IMAGES", *extra])


def per_class_errors(run_id: str, class_names: list[str], root: str | Path | None = None) -> list[dict]:
    """Test accuracy per class and its most common wrong answer, from the run's stored predictions."""
    pred = run_store.load_predictions(run_id, root)
    y, p = np.asarray(pred["y_true"]), np.asarray(pred["y_pred"])
    out = []
    for i, name in enumerate(class_names):
        mask = y == i
        if not mask.any():
            continue
        wrong = np.bincount(p[mask & (p != i)], minlength=len(class_names))
        top = int(wrong.argmax()) if wrong.sum() else None
        out.append({"class": name, "n": int(mask.sum()), "accuracy": float((p[mask] == i).mean()),
                    "confused_with": class_names[top] if top is not None else None,
                    "confused_n": int(wrong[top]) if top is not None else 0})
    return out


def fit_configs(dataset: str, backbone: str, method: str, profile: str, **changes) -> list[RunConfig]:
    """The candidates: the tuned protocol's selection runs of the cell on its selection seed (the same run ids, so a
    registered dataset with the protocol's recipe reuses them), with ``changes`` applied."""
    return tuning.search_configs(profile, dataset, backbone, method, **changes)


def fit(data: str | Path, backbone: str, *, method: str = "adapter", rank: int | str = 16, profile: str | None = None,
        seeds: tuple[int, ...] | None = None, budget: float = DEFAULT_BUDGET, out: str | Path | None = None,
        root: str | Path | None = None, verbose: bool = False, log=print, **changes) -> FitReport:
    """Choose the learning rate on validation by successive halving, train the final adapter (and ``seeds``), and
    write ``<out>/adapters.safetensors``, ``report.json`` and ``report.md``. ``rank='auto'`` asks the rank advisor.
    ``changes`` override recipe fields (epochs, batch_size, limit, pretrained, ...)."""
    if method not in FIT_METHODS:
        raise ValueError(f"method={method!r} is not allowed: fit trains one of {FIT_METHODS} (it writes an adapter "
                         "file; use `run` for a whole-model regime such as full FT)")
    dataset = dataset_name(data)
    profile = profile or default_profile(backbone)
    p = protocol(profile)
    seeds = tuple(dict.fromkeys(seeds)) if seeds else (p.selection_seed,)  # a seed given twice trains (and counts) once
    bad = [s for s in seeds if isinstance(s, bool) or not isinstance(s, int) or s < 0]
    if bad:
        raise ValueError(f"seeds {bad} are not allowed: use non-negative integers")
    out = Path(out) if out is not None else Path(f"fit-{Path(dataset).name}-{backbone}-{method}")
    _check_out(out)
    ranked = regime(method).adapter_options
    if rank == "auto" and not ranked:
        raise ValueError(f"rank='auto' advises an adapter's rank: method={method!r} has none")
    adapter_changes = {"rank": AdapterConfig.rank if rank == "auto" else int(rank)} if ranked else {}
    configs = fit_configs(dataset, backbone, method, profile, **adapter_changes, **changes)
    schedule(len(configs), configs[0].epochs, budget, proxy=True)  # an impossible budget fails before anything trains
    advice = None
    if rank == "auto":  # the advised rank changes the configs, not their count or length: the budget check holds
        advice = advise(dataset, backbone, profile=profile, root=root, verbose=verbose, log=log, **changes)
        log(f"[advise] {advice.summary}")
        adapter_changes = {"rank": advice.rank}
        configs = fit_configs(dataset, backbone, method, profile, **adapter_changes, **changes)
    val_counts = check_selectable(configs[0])
    log(f"[fit] {dataset}: {len(val_counts)} classes, {sum(val_counts.values())} validation images; "
        f"{len(configs)} candidate rates {[c.lr for c in configs]}")
    halving, _ = run_halving(configs, budget=budget, root=root, verbose=verbose, log=log, proxy=True)
    log(f"[fit] {halving.plan.describe()}; chosen lr {halving.lr:g}")
    by_lr = {float(c.lr): c for c in configs}
    chosen = by_lr[halving.lr]
    finals = [chosen if s == p.selection_seed else chosen.with_(seed=s) for s in seeds]
    records = [run(c, root=root, verbose=verbose) for c in finals]
    for c, r in zip(finals, records):
        log(f"[{c.run_id}] seed {c.seed} at lr {c.lr:g}: val acc {r['metrics']['val_acc']:.2%}, "
            f"test acc {r['metrics']['test_acc']:.2%}")
    first = records[0]
    out.mkdir(parents=True, exist_ok=True)
    target = out / run_store.ADAPTER_FILE
    # the run's file as is
    atomic_write_bytes(target, run_store.adapter_file_for_run(first["run_id"], root).read_bytes())
    margin, margin_epoch = halving.margin
    n_val = sum(val_counts.values())
    level = halving.scores[margin_epoch].get(halving.lr, math.nan)
    noise = 100 * math.sqrt(level * (1 - level) / n_val) if n_val and 0 <= level <= 1 else math.nan
    plan = halving.plan
    proxy_epochs = plan.proxy_epochs

    def scored_by(lr: float, last: int) -> str:  # the run that gave the candidate its last score
        return (proxy_config(by_lr[lr], last) if last == proxy_epochs else by_lr[lr]).run_id

    def proxy_of(lr: float) -> str | None:  # the run behind a candidate's first-rung score
        return proxy_config(by_lr[lr], proxy_epochs).run_id if proxy_epochs is not None else None

    lasts = {lr: max(e for e, s in halving.scores.items() if lr in s) for lr in by_lr}
    report = FitReport(
        dataset=dataset, backbone=backbone, method=method, rank=adapter_changes.get("rank"), profile=profile,
        schedule=halving.plan.describe(), cost_runs=halving.plan.cost, overhead_runs=halving.plan.overhead,
        candidates=[{"lr": lr, "run_id": scored_by(lr, lasts[lr]), "proxy_run_id": proxy_of(lr),
                     "val_acc": {e: _finite(s[lr]) for e, s in halving.scores.items() if lr in s},
                     "last_epoch": lasts[lr], "chosen": lr == halving.lr}
                    for lr in sorted(by_lr)],
        lr=halving.lr, at_grid_edge=halving.lr in (min(by_lr), max(by_lr)), margin_points=_finite(100 * margin),
        margin_epoch=margin_epoch,
        seeds=[{"seed": c.seed, "run_id": c.run_id, "val_acc": r["metrics"]["val_acc"],
                "test_acc": r["metrics"]["test_acc"]} for c, r in zip(finals, records)],
        per_class=per_class_errors(first["run_id"], list(first["dataset"]["class_names"]), root),
        trainable_params=int(first["params"]["trainable"]), file_bytes=target.stat().st_size, adapter_file=str(target),
        predict_command=_predict_command(target, first, profile, root),
        rank_advice=_json_safe(advice.to_dict()) if advice is not None else None, proxy_epochs=proxy_epochs,
        val_images=n_val, margin_noise_points=_finite(noise))
    run_store.write_json(out / "report.json", report.to_dict())
    atomic_write_bytes(out / "report.md", report.markdown().encode())
    if report.margin_within_noise is not None:
        log(f"[fit] margin {report.margin_points:+.2f} points over the runner-up at epoch {margin_epoch}; the "
            f"validation sampling sd is {report.margin_noise_points:.2f} points ({n_val} images): "
            + ("within it, a tie rather than a measured best" if report.margin_within_noise else "beyond it"))
    log(f"[fit] {target} ({report.file_bytes:,} bytes), report {out / 'report.md'}")
    return report


__all__ = ["FIT_METHODS", "FitReport", "fit", "fit_configs", "per_class_errors"]
