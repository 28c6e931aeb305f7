"""``make rehearse``: the paper profile end to end on CPU, offline, before anyone spends a GPU-hour on it.

    python benchmarks/rehearse.py                 # a throw-away project home, removed afterwards (~3 min on 2 cores)
    python benchmarks/rehearse.py --workdir /tmp/r --keep

The paper profile is what a researcher with a GPU runs first; this runs the same commands on the same code
paths, in a temporary project home, with only two things stood in for:

- **weights**: a local Hugging Face cache entry for each of the three paper backbones under its pinned
  repository and tag, in timm's own format, from a randomly initialised model (``benchmarks.hub_cache``),
  read with ``HF_HUB_OFFLINE=1`` — so ``create_backbone(..., pretrained=True)`` goes through timm's real
  loading (tag resolution, ``pretrained_cfg``, checkpoint filter, head reset, the tag's mean/std and crop);
- **data**: a few images of Oxford-IIIT Pet in its real on-disk format (``tests/fixtures_data.py``), read by
  torchvision and sized to 224 px by the paper transforms.

Then: ``python -m adaptertune run --profile paper`` for every regime on DeiT-T/16 with the paper grid's own
configs (50 epochs, batch 128 — one step per epoch on the fixture), so the notebooks find them; a 1-epoch
``--limit`` adapter run on ViT-S/16 and ViT-B/16; and ``python -m adaptertune.paper.suite --profile paper
--no-train``, which executes notebooks 01–05 on that partial store. The checks: each run used its tag's
weights (the frozen-backbone fingerprint in its adapter file equals the cached weights') and the data config
its tag requires (AugReg ViTs: mean = std = 0.5; DeiT: ImageNet statistics; the tag's crop); the store and
the grids see the runs; every notebook executed, rendered what exists and named the command for the rest.

Pets rather than CIFAR-10: torchvision checks CIFAR's and SVHN's files against md5 sums a fixture cannot
match (the tests patch the sums in-process; the notebooks' kernels are other processes).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402
import timm  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from adaptertune.adapter_files import backbone_fingerprint  # noqa: E402
from adaptertune.backbones import PAPER_BACKBONES  # noqa: E402
from adaptertune.config import NON_SEMANTIC, RunConfig  # noqa: E402
from adaptertune.data.transforms import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from adaptertune.paper import experiments  # noqa: E402
from adaptertune.regimes import head_parameter_names, methods, regime  # noqa: E402
from adaptertune.store import runs as store  # noqa: E402
from adaptertune.store.table import load_results  # noqa: E402
from benchmarks.hub_cache import hub_repo_id, write_hub_entry  # noqa: E402

PROFILE = "paper"
DATASET = "pets"
FIXTURE_PER_CLASS = (1, 1)  # trainval / test images per breed (3 breeds): 2 train, 1 validation, 3 test images
GRID_BACKBONE = "deit_tiny_patch16_224"  # the cheapest paper backbone trains the grid's own configs
QUICK = {"epochs": 1, "warmup_epochs": 0, "limit": 2}  # the other two: one short adapter run each
AUGREG = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
# What each pinned tag was trained with (PAPER.md, Normalisation), stated independently of timm's config.
EXPECTED_NORMALISATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "vit_small_patch16_224": AUGREG,
    "vit_base_patch16_224": AUGREG,
    "deit_tiny_patch16_224": (IMAGENET_MEAN, IMAGENET_STD),
}
NOTEBOOK_STEMS = ("01_method", "02_theory", "03_main_results", "04_ablations", "05_failure_analysis")


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str = ""


@dataclass
class Rehearsal:
    """What ran, how long it took and every check with its outcome."""

    workdir: Path
    checks: list[Check] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        self.checks.append(Check(name, bool(ok), detail))
        return bool(ok)

    def summary(self) -> str:
        lines = [f"{'ok ' if c.ok else 'FAIL'} {c.name}" + (f": {c.detail}" if c.detail and not c.ok else "")
                 for c in self.checks]
        steps = ", ".join(f"{k} {v:.0f} s" for k, v in self.seconds.items())
        verdict = "passed" if self.ok else f"FAILED ({len(self.failures)} of {len(self.checks)} checks)"
        return "\n".join(lines + [f"rehearsal {verdict}; {steps}"])


# ----------------------------------------------------------------------------------------------- the plan
def planned_runs() -> list[RunConfig]:
    """Every regime on the grid backbone (the paper grid's own configs), then a quick adapter run on the others."""
    if set(EXPECTED_NORMALISATION) != set(PAPER_BACKBONES):
        raise ValueError(f"EXPECTED_NORMALISATION covers {sorted(EXPECTED_NORMALISATION)}, the paper backbones are "
                         f"{sorted(PAPER_BACKBONES)}: state what each new tag was trained with")
    grid = [experiments.config(PROFILE, DATASET, GRID_BACKBONE, m, 0) for m in methods(in_paper=True)]
    quick = [experiments.config(PROFILE, DATASET, b, "adapter", 0, **QUICK) for b in PAPER_BACKBONES if b != GRID_BACKBONE]
    return grid + quick


def cli_args(cfg: RunConfig) -> list[str]:
    """``python -m adaptertune`` arguments that make ``cfg``: the fields that differ from RunConfig's defaults (not the
    settings outside the run id, such as decode workers: each machine sets those for itself)."""
    default = RunConfig(dataset=cfg.dataset, backbone=cfg.backbone, method=cfg.method)
    args = ["run", "--dataset", cfg.dataset, "--backbone", cfg.backbone, "--method", cfg.method]
    for name in RunConfig.field_names():
        value = getattr(cfg, name)
        if name in ("dataset", "backbone", "method") + NON_SEMANTIC or value == getattr(default, name):
            continue
        flag = name.replace("_", "-")
        if isinstance(value, bool):
            args.append(f"--{flag}" if value else f"--no-{flag}")
        else:
            args += [f"--{flag}", "none" if value is None else str(value)]
    return args


# ------------------------------------------------------------------------------------------------ the set-up
def rehearsal_env(workdir: Path) -> dict[str, str]:
    """The environment of every command: offline hub cache and project home under ``workdir``."""
    env = {k: v for k, v in os.environ.items() if k not in ("ADAPTERTUNE_DATASETS", "ADAPTERTUNE_DOWNLOAD")}
    home = workdir / "home"
    env.update(HF_HOME=str(workdir / "hf"), HF_HUB_CACHE=str(workdir / "hf" / "hub"), HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", ADAPTERTUNE_HOME=str(home), ADAPTERTUNE_RESULTS=str(home / "results"),
               MPLBACKEND="Agg", PYTHONPATH=os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])))
    return env


def _fixture_writers():
    """``tests/fixtures_data.py``: the writers the loader tests use, so the rehearsal's files are the same format."""
    spec = importlib.util.spec_from_file_location("adaptertune_fixtures_data", ROOT / "tests" / "fixtures_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def write_inputs(workdir: Path, env: dict[str, str]) -> dict[str, Path]:
    """Hub cache entries for the paper backbones and the dataset fixture; returns backbone -> cached weights."""
    weights = {name: write_hub_entry(name, env["HF_HUB_CACHE"]) for name in PAPER_BACKBONES}
    _fixture_writers().WRITERS[DATASET](Path(env["ADAPTERTUNE_HOME"]) / "data" / "datasets", per_class=FIXTURE_PER_CLASS)
    return weights


def _command(args: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def _tail(proc: subprocess.CompletedProcess, lines: int = 15) -> str:
    return "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-lines:])


# ------------------------------------------------------------------------------------------------- the checks
def cached_fingerprint(weights: Path, backbone: str, num_classes: int) -> str:
    """The frozen-backbone fingerprint a model built from the cached file has (head excluded, as in adapter files)."""
    model = timm.create_model(backbone, pretrained=False, num_classes=num_classes)
    head = set(head_parameter_names(model))
    model.load_state_dict({k: v for k, v in load_file(str(weights)).items() if k not in head}, strict=False)
    return backbone_fingerprint(model)


def check_run(report: Rehearsal, cfg: RunConfig, results_root: Path, weights: Path) -> None:
    """The run finished, on its tag's weights and with the data config its tag requires."""
    name = f"{cfg.backbone}/{cfg.method}"
    result = store.read_result(cfg.run_id, results_root) or {}
    if not report.check(f"{name}: run {cfg.run_id} finished", result.get("status") == "finished",
                        f"status {result.get('status')!r}: {result.get('error', '')}"):
        return
    full = PAPER_BACKBONES[cfg.backbone]
    info = result["backbone"]
    report.check(f"{name}: pretrained weights of tag {full.split('.', 1)[1]} from the hub cache",
                 info.get("pretrained") is True and info.get("tag") == full.split(".", 1)[1]
                 and info.get("source") == f"timm:{hub_repo_id(full)}", f"backbone info {info}")
    data = result["dataset"]["info"]["data_config"]
    mean, std = EXPECTED_NORMALISATION[cfg.backbone]
    report.check(f"{name}: mean/std {mean[0]}/{std[0]}... as the tag requires",
                 tuple(data["mean"]) == tuple(mean) and tuple(data["std"]) == tuple(std), f"data config {data}")
    tag_cfg = timm.models.get_pretrained_cfg(full)
    resize = math.floor(224 / tag_cfg.crop_pct)
    eval_tf = result["dataset"]["info"]["transform"]["eval"]
    report.check(f"{name}: 224 px, crop_pct {tag_cfg.crop_pct} (Resize {resize} + CenterCrop 224), {tag_cfg.interpolation}",
                 list(data["input_size"]) == [3, 224, 224] and data["crop_pct"] == tag_cfg.crop_pct
                 and data["interpolation"] == tag_cfg.interpolation and f"Resize(size={resize}" in eval_tf
                 and "CenterCrop(size=(224, 224))" in eval_tf, f"data config {data}; eval transform {eval_tf}")
    if not regime(cfg.method).whole_model:
        with safe_open(str(store.run_path(cfg.run_id, results_root) / store.ADAPTER_FILE), framework="pt") as f:
            recorded = f.metadata()["backbone_fingerprint"]
        expected = cached_fingerprint(weights, cfg.backbone, int(result["dataset"]["num_classes"]))
        report.check(f"{name}: the frozen backbone is exactly the cached weights", recorded == expected,
                     f"adapter file fingerprint {recorded[:12]} vs cached weights {expected[:12]}")


def check_store(report: Rehearsal, runs: list[RunConfig], results_root: Path) -> None:
    """The run table has one finished paper row per run, and the paper grids see the grid runs (only those)."""
    table = load_results(results_root)
    ids = {c.run_id for c in runs}
    rows = table[table["run_id"].isin(ids)]
    report.check(f"run store: {len(runs)} finished paper rows with tag and test accuracy",
                 len(rows) == len(runs) and (rows["profile"] == PROFILE).all() and rows["backbone_tag"].notna().all()
                 and rows["test_acc"].between(0, 1).all(), f"{len(rows)} rows:\n{rows.to_string()}")
    grid = experiments.load_grid(PROFILE, "main", root=results_root)
    want = ids & {c.run_id for c in experiments.grid("main", PROFILE)}
    report.check(f"grid main ({PROFILE}) holds the {len(want)} grid runs and marks the rest missing",
                 set(grid.runs["run_id"]) == want and len(grid.missing) == len(experiments.grid("main", PROFILE)) - len(want),
                 grid.note())


def _outputs_text(book) -> str:
    parts = []
    for cell in book.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            for value in out.get("data", {}).values():
                parts.append(value if isinstance(value, str) else "")
    return "\n".join(parts)


def check_notebooks(report: Rehearsal, home: Path, results_root: Path) -> None:
    """Every notebook executed without an error and names the runs it lacks with the command that makes them;
    notebook 03 and Tab.2 show exactly the runs that exist."""
    import nbformat  # the paper extra: absent where only the library is installed (a GPU box's gpu-check)

    executed = home / "notebooks" / "executed" / PROFILE
    for stem in NOTEBOOK_STEMS:
        path = executed / f"{stem}.ipynb"
        if not report.check(f"notebook {stem} executed ({PROFILE})", path.is_file(), f"{path} missing"):
            continue
        book = nbformat.read(path, as_version=4)
        errors = [o for c in book.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
        report.check(f"notebook {stem}: no error output", not errors,
                     "; ".join(f"{e.get('ename')}: {e.get('evalue')}" for e in errors))
        text = _outputs_text(book)
        report.check(f"notebook {stem}: names the missing runs and the command that makes them",
                     "are missing" in text and f"python -m adaptertune sweep --profile {PROFILE} --grid" in text)
    path = executed / "03_main_results.ipynb"
    if path.is_file():
        names = ("main", "tuned", "selection", "extended")  # what notebook 03 loads
        note = experiments.load_grid(PROFILE, *names, root=results_root).note()
        text = _outputs_text(nbformat.read(path, as_version=4))
        report.check("notebook 03 says which runs are missing and the command that makes them",
                     note in text and experiments.make_command(PROFILE, names) in text, note)
    tab2 = home / "figures" / "tables" / PROFILE / "tab2_main.csv"
    if report.check("Tab.2 written", tab2.is_file(), f"{tab2} missing"):
        cells = pd.read_csv(tab2).set_index(["backbone", "regime"])
        trained = cells.index.get_level_values("backbone") == GRID_BACKBONE
        column = f"{DATASET} · paper-recipe"  # the rehearsal trains the paper recipe only; tuned cells stay empty
        report.check(f"Tab.2 ({PROFILE}) fills the {column} cells of {GRID_BACKBONE} and marks every other cell '—'",
                     (cells.loc[trained, column] != "—").all() and (cells.loc[trained].drop(columns=column) == "—").all().all()
                     and (cells.loc[~trained] == "—").all().all(), cells.to_string())
    report.check("HTML appendix written", (home / "figures" / "appendix" / PROFILE / "index.html").is_file())


# ------------------------------------------------------------------------------------------------ the rehearsal
def rehearse(workdir: Path, say: Callable[[str], None] = print, timeout: float = 900) -> Rehearsal:
    """Set up, train, execute the notebooks, check; nothing outside ``workdir`` is written."""
    workdir = Path(workdir).resolve()
    report = Rehearsal(workdir)
    env = rehearsal_env(workdir)
    home, results_root = Path(env["ADAPTERTUNE_HOME"]), Path(env["ADAPTERTUNE_RESULTS"])
    t0 = time.perf_counter()
    say(f"[rehearse] hub cache entries for {', '.join(PAPER_BACKBONES.values())} (random weights) and a {DATASET} "
        f"fixture under {workdir}")
    weights = write_inputs(workdir, env)
    report.seconds["set-up"] = time.perf_counter() - t0
    runs = planned_runs()
    for cfg in runs:
        t = time.perf_counter()
        args = cli_args(cfg) + ["--device", "cpu"]  # on purpose: the paper profile refuses a CPU it was not given
        say(f"[rehearse] python -m adaptertune {' '.join(args)}")
        proc = _command(["-m", "adaptertune", *args], env, timeout)
        secs = report.seconds[f"{cfg.backbone.split('_patch')[0]}/{cfg.method}"] = time.perf_counter() - t
        say(f"[rehearse]   exit {proc.returncode} after {secs:.0f} s")
        printed = proc.stdout.strip().splitlines()[-1] if proc.returncode == 0 and proc.stdout.strip() else "{}"
        report.check(f"{cfg.backbone}/{cfg.method}: the CLI made run {cfg.run_id}",
                     proc.returncode == 0 and json.loads(printed).get("run_id") == cfg.run_id, _tail(proc))
        check_run(report, cfg, results_root, weights[cfg.backbone])
    check_store(report, runs, results_root)
    t = time.perf_counter()
    say(f"[rehearse] python -m adaptertune.paper.suite --profile {PROFILE} --no-train")
    proc = _command(["-m", "adaptertune.paper.suite", "--profile", PROFILE, "--no-train"], env, timeout)
    report.seconds["notebooks"] = time.perf_counter() - t
    grid_runs = len({c.run_id for c in runs} & {c.run_id for c in experiments.all_configs(PROFILE)})
    report.check(f"suite --profile {PROFILE} --no-train: exit 0, plan counts {grid_runs} finished runs",
                 proc.returncode == 0 and f", {grid_runs} finished, " in proc.stdout, _tail(proc))
    check_notebooks(report, home, results_root)
    report.seconds["total"] = time.perf_counter() - t0
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", type=Path, help="where to build the project home and hub cache (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the work directory (executed notebooks, run store)")
    args = p.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="adaptertune-rehearsal-"))
    try:
        report = rehearse(workdir, say=lambda m: print(m, flush=True))
        print(report.summary(), flush=True)
    finally:
        if args.keep or args.workdir:
            print(f"[rehearse] kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
