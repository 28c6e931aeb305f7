"""The run grids behind every table and figure, per profile: ``grid(name, profile) -> list[RunConfig]``.

``paper`` is PAPER.md's protocol (3 backbones × core/extended datasets × 3 regimes × seeds 0–2, 50 epochs,
batch 128, lr 1e-3, wd 0.05, 5 warm-up epochs; ablations on CIFAR-10 / ViT-S/16). ``mini`` is the offline
CPU protocol sized for ~25 minutes of training on 2 cores; ``smoke`` is plumbing only. Ablation grids
vary one thing around the main grid's adapter config, so runs that coincide (same RunConfig -> same
run_id) are trained once and shared between tables.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..backbones import PAPER_BACKBONES as PAPER_BACKBONE_TAGS
from ..backbones import backbone_shape
from ..config import PROFILES, RunConfig
from ..regimes import METHODS
from ..store import runs as results
from ..store.table import load_results
from ..training.pretrain import pretrain_mini
from ..training.sweep import unique

GRIDS = ("main", "extended", "rank", "placement", "init", "sensitivity", "theory", "multitask")


@dataclass(frozen=True)
class Protocol:
    """Everything a profile decides: backbones, datasets, seeds, the recipe and the ablation pair."""

    backbones: tuple[str, ...]
    datasets: tuple[str, ...]
    extended: tuple[str, ...]
    seeds: tuple[int, ...]
    recipe: dict
    ablation: tuple[str, str]  # (dataset, backbone)
    ranks: tuple[int, ...]
    sensitivity: dict[str, tuple[float, ...]]
    per_dataset: dict[str, dict] = field(default_factory=dict)  # recipe overrides for one dataset
    ablation_seeds: tuple[int, ...] | None = None
    sensitivity_seeds: tuple[int, ...] | None = None
    extended_note: str = ""

    @property
    def ablation_depth(self) -> int:
        """Blocks of the ablation backbone (placement grids and the schematic)."""
        return backbone_shape(self.ablation[1])[0]


PAPER_CORE = ("cifar10", "cifar100", "svhn", "pets", "food101")
PAPER_EXTENDED = ("flowers102", "aircraft", "imagenet_r", "tiny_imagenet")
PAPER_BACKBONES = tuple(PAPER_BACKBONE_TAGS)

PROTOCOLS: dict[str, Protocol] = {
    "paper": Protocol(
        backbones=PAPER_BACKBONES, datasets=PAPER_CORE, extended=PAPER_EXTENDED, seeds=(0, 1, 2),
        recipe=dict(epochs=50, batch_size=128, lr=1e-3, weight_decay=0.05, warmup_epochs=5, profile="paper"),
        ablation=("cifar10", "vit_small_patch16_224"), ranks=(1, 2, 4, 8, 16, 32, 64),
        sensitivity={"lr": (1e-4, 5e-4, 1e-3, 5e-3), "weight_decay": (0.0, 0.01, 0.05, 0.1), "scale": (0.5, 1.0, 2.0, 4.0)},
        extended_note="the paper's extended benchmark (Flowers102, FGVC-Aircraft, ImageNet-R, Tiny-ImageNet)",
    ),
    # Sized for the 2-core budget (docs/notebooks.md has the measured times): a few epochs; the tiny splits get
    # smaller batches so they still take a useful number of steps; ablations on the near-domain target with the
    # small backbone (the CIFAR-10 / ViT-S analogue). Split sizes are the data module's (data/mini.py).
    "mini": Protocol(
        backbones=("mini-s", "mini-b"), datasets=("fmnist_target", "fmnist_lowdata", "digits"), extended=(),
        seeds=(0, 1, 2),
        recipe=dict(epochs=5, batch_size=128, lr=1e-3, weight_decay=0.05, warmup_epochs=1, profile="mini", log_every=1),
        per_dataset={"fmnist_lowdata": dict(epochs=20, batch_size=32), "digits": dict(epochs=15, batch_size=64)},
        ablation=("fmnist_target", "mini-s"), ranks=(1, 2, 4, 8, 16, 32, 64),
        sensitivity={"lr": (3e-4, 1e-3, 3e-3), "weight_decay": (0.0, 0.05, 0.5), "scale": (0.5, 1.0, 4.0)},
        sensitivity_seeds=(0,),
        extended_note="paper-only: the offline mini protocol has no stand-in for the extended datasets",
    ),
    "smoke": Protocol(
        backbones=("mini-s",), datasets=("fmnist_target",), extended=(), seeds=(0,),
        recipe=dict(epochs=1, batch_size=32, lr=1e-3, weight_decay=0.05, warmup_epochs=0, limit=64, profile="smoke",
                    log_every=1, train_eval_limit=64),
        ablation=("fmnist_target", "mini-s"), ranks=(1, 4, 16), sensitivity={"scale": (1.0, 4.0)},
        extended_note="paper-only (smoke: plumbing only)",
    ),
}


def protocol(profile: str) -> Protocol:
    if profile not in PROTOCOLS:
        raise ValueError(f"profile={profile!r} is not allowed: choose one of {tuple(PROTOCOLS)}")
    return PROTOCOLS[profile]


def recipe(profile: str, dataset: str) -> dict:
    """The profile's recipe with the dataset's overrides applied."""
    p = protocol(profile)
    return {**p.recipe, **p.per_dataset.get(dataset, {})}


def config(profile: str, dataset: str, backbone: str, method: str, seed: int = 0, **changes) -> RunConfig:
    """One run of the profile's protocol; ``changes`` override adapter knobs or recipe fields."""
    return RunConfig(dataset=dataset, backbone=backbone, method=method, seed=seed, **{**recipe(profile, dataset), **changes})


def _product(profile: str, datasets, backbones, methods, seeds, **changes) -> list[RunConfig]:
    return [config(profile, d, b, m, s, **changes) for b, d, m, s in itertools.product(backbones, datasets, methods, seeds)]


def _ablation(profile: str, **changes) -> list[RunConfig]:
    p = protocol(profile)
    dataset, backbone = p.ablation
    seeds = p.ablation_seeds or p.seeds
    return [config(profile, dataset, backbone, "adapter", s, **changes) for s in seeds]


def grid(name: str, profile: str) -> list[RunConfig]:
    """The runs one table/figure family needs, deduplicated by run_id, in a stable order."""
    if profile not in PROFILES:
        raise ValueError(f"profile={profile!r} is not allowed: choose one of {PROFILES}")
    p = protocol(profile)
    if name == "main":
        configs = _product(profile, p.datasets, p.backbones, METHODS, p.seeds)
    elif name == "extended":
        configs = _product(profile, p.extended, p.backbones, METHODS, p.seeds)
    elif name == "rank":
        dataset, backbone = p.ablation
        configs = [c for r in p.ranks for c in _ablation(profile, rank=r)]
        configs += [config(profile, dataset, backbone, m, s) for m in ("head", "full") for s in (p.ablation_seeds or p.seeds)]
    elif name == "placement":
        depth = p.ablation_depth
        configs = [c for every in (1, 2) for start in (0, depth // 2) for c in _ablation(profile, every=every, start=start)]
    elif name == "init":
        configs = [c for init in ("zero", "random") for c in _ablation(profile, init=init)]
    elif name == "sensitivity":
        dataset, backbone = p.ablation
        seeds = p.sensitivity_seeds or p.ablation_seeds or p.seeds
        configs = [config(profile, dataset, backbone, "adapter", s, **{knob: v}) for knob, values in p.sensitivity.items()
                   for v in values for s in seeds]
    elif name == "theory":
        # full FT on every main dataset for the small backbone (seed 0): the task shifts whose spectra are measured
        backbone = p.ablation[1]
        configs = [config(profile, d, backbone, "full", p.seeds[0]) for d in p.datasets] + grid("rank", profile)
    elif name == "multitask":
        # notebook 06's tasks: one adapter run per dataset with start = L/2 on the ablation backbone (seed 0), served
        # together from one frozen backbone; the ablation dataset's run is the placement grid's (every=1, start=L/2)
        backbone = p.ablation[1]
        configs = [config(profile, d, backbone, "adapter", p.seeds[0], start=p.ablation_depth // 2) for d in p.datasets]
    else:
        raise ValueError(f"grid name {name!r} is unknown: choose one of {GRIDS}")
    return unique(configs)


def all_configs(profile: str, names: tuple[str, ...] = GRIDS) -> list[RunConfig]:
    """Every run of the profile, each once."""
    return unique(c for name in names for c in grid(name, profile))


def sensitivity_defaults(profile: str) -> dict[str, float]:
    """The main-grid value of each sensitivity knob (the row every Tab.5 block shares)."""
    base = config(profile, *protocol(profile).ablation, "adapter")
    return {knob: float(getattr(base, knob)) for knob in protocol(profile).sensitivity}


def select(results: pd.DataFrame, name: str, profile: str) -> pd.DataFrame:
    """The rows of ``results`` that belong to grid ``name`` of ``profile`` (matched by run_id)."""
    ids = {c.run_id for c in grid(name, profile)}
    return results[results["run_id"].isin(ids)].reset_index(drop=True)


def plan(profile: str, names: tuple[str, ...] = GRIDS) -> pd.DataFrame:
    """One row per run of the profile (deduplicated), with the grids it serves; the ``--dry-run`` listing."""
    serves: dict[str, list[str]] = {}
    configs: dict[str, RunConfig] = {}
    for name in names:
        for c in grid(name, profile):
            serves.setdefault(c.run_id, []).append(name)
            configs.setdefault(c.run_id, c)
    configs = {rid: c.resolved() for rid, c in configs.items()}  # adapter fields None for head/full
    rows = [{"run_id": rid, "grids": ",".join(serves[rid]), "dataset": c.dataset, "backbone": c.backbone,
             "method": c.method, "rank": c.rank, "every": c.every, "start": c.start, "init": c.init, "scale": c.scale,
             "lr": c.lr, "weight_decay": c.weight_decay, "seed": c.seed, "epochs": c.epochs, "limit": c.limit}
            for rid, c in configs.items()]
    return pd.DataFrame(rows)


def make_command(profile: str, names: tuple[str, ...]) -> str:
    """The one command that trains the missing runs of ``names`` (the whole suite for the offline profiles)."""
    if profile in ("smoke", "mini"):
        return f"make {profile}" if profile == "mini" else "python -m adaptertune.paper.suite --profile smoke"
    return "python -m adaptertune sweep --profile " + profile + "".join(f" --grid {n}" for n in names)


@dataclass(frozen=True)
class GridRuns:
    """The finished runs of some grids of a profile, and the runs still missing: what a notebook renders."""

    profile: str
    names: tuple[str, ...]
    runs: pd.DataFrame
    missing: tuple[RunConfig, ...]

    @property
    def complete(self) -> bool:
        return not self.missing

    def select(self, name: str) -> pd.DataFrame:
        """The finished rows of one of the grids."""
        if name not in self.names:
            raise ValueError(f"grid {name!r} was not loaded: this GridRuns holds {self.names}")
        return select(self.runs, name, self.profile)

    def note(self) -> str:
        """Markdown: how many runs exist and, if some are missing, which and the command that makes them."""
        total = len(self.runs) + len(self.missing)
        label = ", ".join(self.names)
        if self.complete:
            return f"All {total} runs of grid(s) {label} ({self.profile}) are in the run store."
        shown = ", ".join(f"{c.dataset}/{c.backbone}/{c.method}" + (f" r={c.rank}" if c.method == "adapter" else "")
                          + f" seed={c.seed}" for c in self.missing[:6])
        more = f" and {len(self.missing) - 6} more" if len(self.missing) > 6 else ""
        return (f"**{len(self.missing)} of {total} runs of grid(s) {label} ({self.profile}) are missing** "
                f"({shown}{more}): what follows shows the {len(self.runs)} that exist and marks the rest as missing. "
                f"Make them with `{make_command(self.profile, self.names)}`.")

    def _repr_markdown_(self) -> str:
        return self.note()


def load_grid(profile: str, *names: str, root: str | Path | None = None) -> GridRuns:
    """The store's finished runs of grids ``names`` of ``profile`` (all grids if none named); nothing is trained."""
    names = names or GRIDS
    configs = unique(c for name in names for c in grid(name, profile))
    ids = {c.run_id for c in configs}
    finished = load_results(root)
    runs = finished[finished["run_id"].isin(ids)].reset_index(drop=True)
    missing = tuple(c for c in configs if c.run_id not in set(runs["run_id"]))
    return GridRuns(profile, tuple(names), runs, missing)


def ensure_backbones(profile: str, verbose: bool = False) -> dict:
    """Pretrain the mini backbones of ``profile`` if missing (cached after the first call); paper: nothing to do."""
    if profile == "paper":
        return {}
    return pretrain_mini(profile, names=protocol(profile).backbones, verbose=verbose)


def find_run(runs: pd.DataFrame, **match) -> str:
    """The run_id of the one row matching every ``column=value`` (e.g. dataset, backbone, method, seed)."""
    mask = pd.Series(True, index=runs.index)
    for key, value in match.items():
        mask &= runs[key] == value
    hits = runs.loc[mask, "run_id"].tolist()
    if len(hits) != 1:
        raise LookupError(f"{len(hits)} finished runs match {match} (expected exactly 1); run the grid first")
    return hits[0]


def pick_runs(runs: pd.DataFrame, by: str, order: tuple | None = None, **match) -> dict:
    """``{value of column by: run_id}`` over the rows matching every ``column=value``; each value at most once,
    in the given ``order`` of values (values missing from the store are left out)."""
    mask = pd.Series(True, index=runs.index)
    for key, value in match.items():
        mask &= runs[key] == value
    chosen = runs.loc[mask]
    doubled = chosen[by][chosen[by].duplicated()].tolist()
    if doubled:
        raise LookupError(f"several finished runs match {match} for {by}={doubled}: narrow the match")
    found = dict(zip(chosen[by], chosen["run_id"]))
    return {k: found[k] for k in (order if order is not None else sorted(found)) if k in found}


def curves(runs: pd.DataFrame, kind: str = "steps", keep: tuple[str, ...] = ("method", "init", "seed", "rank")) -> pd.DataFrame:
    """Per-step (``steps``) or per-epoch (``metrics``) logs of every run in ``runs``, with config columns attached."""
    loaders = {"steps": results.load_steps, "metrics": results.load_metrics}
    if kind not in loaders:
        raise ValueError(f"kind={kind!r} is not allowed: choose one of {tuple(loaders)}")
    parts = []
    for _, row in runs.iterrows():
        part = loaders[kind](row["run_id"])
        for col in ("run_id",) + keep:
            part[col] = row[col]
        parts.append(part)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


__all__ = ["GRIDS", "PROTOCOLS", "GridRuns", "Protocol", "all_configs", "config", "curves", "ensure_backbones", "find_run",
           "grid", "load_grid", "make_command", "pick_runs", "plan", "protocol", "recipe", "select", "sensitivity_defaults"]
