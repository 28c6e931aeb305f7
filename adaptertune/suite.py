"""``python -m adaptertune.suite --profile mini|smoke|paper [--dry-run] [--only 03]``: every table and figure.

Order: check the notebooks' parameters (an unknown one is an error before any work), plan the runs (count,
what is cached, an ETA; GPU-hours for ``paper``), pretrain the mini backbones if missing, train every missing
run of every grid (the run store makes this a no-op when all are cached), execute the notebooks with
papermill into ``notebooks/executed/<profile>/``, render each to HTML and write
``figures/appendix/<profile>/index.html``. A failing notebook stops the suite, naming the notebook and
the cell; the executed notebook with its traceback stays on disk.
"""
from __future__ import annotations

import argparse
import ast
import html
import json
import sys
import time
from pathlib import Path

import pandas as pd

from . import experiments, results
from .atomic import atomic_write_bytes
from .config import PROFILES, RunConfig
from .paths import figures_dir, notebooks_dir, repo_root

NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"
# Rough training throughput (images/s) by method, used only until the store has measured numbers for a
# backbone: GPU figures for the paper backbones (fp32, one A100/H100-class GPU, batch 128), CPU figures
# measured on the 2-core machine for the mini ones. Evaluation passes are counted at 3× these rates.
THROUGHPUT = {
    "vit_small_patch16_224": {"full": 1200, "adapter": 1400, "head": 3600},
    "vit_base_patch16_224": {"full": 420, "adapter": 500, "head": 1300},
    "deit_tiny_patch16_224": {"full": 2600, "adapter": 3000, "head": 7000},
    "mini-s": {"full": 2000, "adapter": 2300, "head": 6500},
    "mini-b": {"full": 900, "adapter": 1200, "head": 2800},
}
# Training-pool sizes before the 10% validation hold-out (paper datasets; mini ones as data/mini.py caps them).
TRAIN_SIZES = {"cifar10": 50000, "cifar100": 50000, "svhn": 73257, "pets": 3680, "food101": 75750, "flowers102": 2040,
               "aircraft": 6667, "imagenet_r": 27000, "tiny_imagenet": 100000, "fmnist_target": 6000,
               "fmnist_lowdata": 250, "digits": 1258, "fmnist_source": 30000}
TEST_SIZES = {"cifar10": 10000, "cifar100": 10000, "svhn": 26032, "pets": 3669, "food101": 25250, "flowers102": 6149,
              "aircraft": 3333, "imagenet_r": 3000, "tiny_imagenet": 10000, "fmnist_target": 5000, "fmnist_lowdata": 5000,
              "digits": 539}


# -- notebooks and their parameters --------------------------------------------------------------------------
def notebook_source() -> Path:
    """``notebooks/`` of the project home, or of this checkout when the home (e.g. a test's tmp dir) has none."""
    home = notebooks_dir()
    return home if any(home.glob(NOTEBOOK_GLOB)) else Path(__file__).resolve().parent.parent / "notebooks"


def notebooks(only: list[str] | None = None, source: Path | None = None) -> list[Path]:
    """The numbered notebooks, in order; ``only`` keeps those whose name starts with one of the prefixes."""
    source = source or notebook_source()
    found = sorted(source.glob(NOTEBOOK_GLOB))
    if not found:
        raise FileNotFoundError(f"no notebooks matching {NOTEBOOK_GLOB} in {source}")
    if only:
        unknown = [o for o in only if not any(nb.name.startswith(o) for nb in found)]
        if unknown:
            raise ValueError(f"--only {unknown} matches no notebook: choose from {[nb.stem for nb in found]}")
        found = [nb for nb in found if any(nb.name.startswith(o) for o in only)]
    return found


def declared_parameters(notebook: Path) -> dict[str, dict]:
    """The parameters cell of a notebook, as papermill reads it (name -> inferred type, default, help)."""
    import papermill

    return papermill.inspect_notebook(str(notebook))


def check_parameters(notebook_paths: list[Path], given: dict) -> None:
    """Every given parameter must be declared by every notebook it is passed to; else name it and the allowed ones."""
    for nb in notebook_paths:
        declared = declared_parameters(nb)
        if not declared:
            raise ValueError(f"notebook {nb.name} has no cell tagged 'parameters'")
        unknown = sorted(set(given) - set(declared))
        if unknown:
            raise ValueError(f"parameter(s) {unknown} are not declared by notebook {nb.name}: its parameters are "
                             f"{sorted(declared)}")


def parse_param(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` with VALUE a Python literal (``8``, ``0.5``, ``'x'``, ``True``); bare words are strings."""
    if "=" not in text:
        raise ValueError(f"--param {text!r} is not allowed: use KEY=VALUE, e.g. --param theory_images=256")
    key, value = text.split("=", 1)
    try:
        return key.strip(), ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key.strip(), value


# -- planning ---------------------------------------------------------------------------------------------
def measured_throughput(frame: pd.DataFrame) -> dict[tuple[str, str, str], float]:
    """(profile, backbone, method) -> median measured training images/s of finished runs in the store."""
    if frame.empty or "train_images_per_s" not in frame:
        return {}
    good = frame.dropna(subset=["train_images_per_s"])
    return good.groupby(["profile", "backbone", "method"])["train_images_per_s"].median().to_dict()


def estimate_seconds(cfg: RunConfig, measured: dict | None = None) -> float:
    """Rough wall time of one run: epochs × train images / throughput, plus val/test/train-eval passes."""
    rate = (measured or {}).get((cfg.profile, cfg.backbone, cfg.method)) or THROUGHPUT.get(cfg.backbone, {}).get(cfg.method, 500)
    train = TRAIN_SIZES.get(cfg.dataset, 20000)
    test = TEST_SIZES.get(cfg.dataset, 5000)
    if cfg.limit:
        train, test = min(train, cfg.limit), min(test, cfg.limit)
    fit = train * (1 - cfg.val_fraction)
    evaluated = cfg.epochs * train * cfg.val_fraction + test + min(cfg.train_eval_limit, fit)
    return cfg.epochs * fit / rate + evaluated / (3 * rate) + 2.0  # + model/data set-up


def plan_frame(profile: str, root: str | Path | None = None) -> pd.DataFrame:
    """Every run of the profile with its status and estimated seconds."""
    table = experiments.plan(profile)
    configs = {c.run_id: c for c in experiments.all_configs(profile)}
    measured = measured_throughput(results.load_results(root))
    table["status"] = [results.run_status(rid, root) for rid in table["run_id"]]
    table["est_s"] = [estimate_seconds(configs[rid], measured) for rid in table["run_id"]]
    return table


def describe_plan(profile: str, table: pd.DataFrame) -> str:
    todo = table[table["status"] != "finished"]
    secs = todo["est_s"].sum()
    unit = "GPU-hours" if profile == "paper" else "CPU time"
    amount = f"{secs / 3600:.1f} GPU-hours" if profile == "paper" else f"~{secs / 60:.1f} min"
    by_grid = {g: int(table["grids"].str.contains(g).sum()) for g in experiments.GRIDS}
    return (f"[suite] profile {profile}: {len(table)} runs ({', '.join(f'{g} {n}' for g, n in by_grid.items() if n)}; "
            f"shared runs counted once), {len(table) - len(todo)} finished, {len(todo)} to train; "
            f"estimated {unit} for the missing runs: {amount}")


# -- executing and rendering ---------------------------------------------------------------------------------
class NotebookFailed(RuntimeError):
    """A notebook raised; the message names the notebook and the cell."""


def execute(notebook: Path, output: Path, parameters: dict, log_output: bool = False) -> float:
    """Run one notebook with papermill (kernel cwd = repo root); returns seconds."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    output.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        papermill.execute_notebook(str(notebook), str(output), parameters=parameters, kernel_name="python3",
                                   cwd=str(repo_root()), progress_bar=False, log_output=log_output)
    except PapermillExecutionError as err:
        raise NotebookFailed(f"notebook {notebook.name} failed in cell {err.cell_index} (execution count {err.exec_count}): "
                             f"{err.ename}: {err.evalue}\n  the executed notebook with the traceback is kept at {output}") from err
    return time.perf_counter() - t0


def render_html(executed: Path, out_dir: Path) -> Path:
    """nbconvert HTML with every figure embedded (inline PNG outputs), input cells kept."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_filename(str(executed))
    return atomic_write_bytes(out_dir / f"{executed.stem}.html", body.encode())


def notebook_title(path: Path) -> str:
    """The first markdown heading of a notebook (its claim)."""
    cells = json.loads(path.read_text())["cells"]
    for cell in cells:
        if cell["cell_type"] == "markdown":
            for line in "".join(cell["source"]).splitlines():
                if line.startswith("#"):
                    return line.lstrip("# ").strip()
    return path.stem


def write_index(profile: str, pages: list[tuple[Path, str, float]], out_dir: Path) -> Path:
    """``index.html`` linking every rendered notebook, with its title and execution time."""
    items = "\n".join(f'<li><a href="{html.escape(p.name)}">{html.escape(p.stem)}</a> — {html.escape(title)} '
                      f"<small>({secs:.0f} s)</small></li>" for p, title, secs in pages)
    warn = ('<p style="color:red;font-weight:bold">SMOKE — plumbing only, not results.</p>' if profile == "smoke" else "")
    text = (f"<!doctype html>\n<html><head><meta charset='utf-8'><title>adaptertune appendix ({profile})</title></head>"
            f"<body><h1>adaptertune — notebook appendix, profile <code>{profile}</code></h1>{warn}\n<ol>\n{items}\n</ol>\n"
            f"<p>Tables: <code>figures/tables/{profile}/</code>; figures: <code>figures/{profile}/</code>; executed notebooks: "
            f"<code>notebooks/executed/{profile}/</code>.</p></body></html>\n")
    return atomic_write_bytes(out_dir / "index.html", text.encode())


def executed_dir(profile: str) -> Path:
    return notebooks_dir() / "executed" / profile


def appendix_dir(profile: str) -> Path:
    return figures_dir() / "appendix" / profile


# -- the suite --------------------------------------------------------------------------------------------
def run_suite(profile: str, only: list[str] | None = None, params: dict | None = None, dry_run: bool = False,
              train: bool = True, log_output: bool = False, say=print) -> int:
    """The whole pipeline; returns a process exit code (0 ok, 1 a run or notebook failed)."""
    if profile not in PROFILES:
        raise ValueError(f"profile={profile!r} is not allowed: choose one of {PROFILES}")
    t0 = time.perf_counter()
    nbs = notebooks(only)
    given = {"profile": profile, **(params or {})}
    check_parameters(nbs, given)
    table = plan_frame(profile)
    say(describe_plan(profile, table))
    if dry_run:
        cols = ["run_id", "grids", "dataset", "backbone", "method", "rank", "every", "start", "init", "scale", "lr",
                "weight_decay", "seed", "epochs", "limit", "status", "est_s"]
        say(table[cols].to_string(index=False, float_format=lambda v: f"{v:g}"))
        say(f"[suite] dry run: nothing trained; notebooks that would run: {[nb.stem for nb in nbs]}")
        return 0
    if train:
        if profile != "paper":
            say(f"[suite] mini backbones ({profile}): pretraining if missing")
            experiments.ensure_backbones(profile, verbose=True)
        from .sweep import sweep

        summary = sweep(experiments.all_configs(profile), progress=True)
        failed = [s for s in summary if s["status"] == "failed"]
        if failed:
            say(f"[suite] {len(failed)} run(s) failed: " + ", ".join(f"{s['run_id']} ({s['dataset']}/{s['backbone']}/"
                                                                     f"{s['method']})" for s in failed)
                + "; see results/runs/<run_id>/result.json; retry with `python -m adaptertune sweep --retry-failed`")
            return 1
    pages = []
    for k, nb in enumerate(nbs, 1):
        out = executed_dir(profile) / nb.name
        say(f"[suite] notebook {k}/{len(nbs)} {nb.stem} ...")
        try:
            secs = execute(nb, out, given, log_output=log_output)
        except NotebookFailed as err:
            say(f"[suite] FAILED: {err}")
            return 1
        page = render_html(out, appendix_dir(profile))
        pages.append((page, notebook_title(out), secs))
        say(f"[suite] notebook {k}/{len(nbs)} {nb.stem} done in {secs:.0f} s -> {page}")
    if only is None or pages:
        index = write_index(profile, pages, appendix_dir(profile))
        say(f"[suite] appendix: {index}")
    say(f"[suite] profile {profile} done in {time.perf_counter() - t0:.0f} s")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m adaptertune.suite", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=PROFILES, default="mini")
    parser.add_argument("--dry-run", action="store_true", help="list the runs and their status; train and execute nothing")
    parser.add_argument("--only", action="append", metavar="PREFIX",
                        help="run only notebooks whose name starts with PREFIX (e.g. 03); repeatable")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="extra notebook parameter (must be declared by each notebook run)")
    parser.add_argument("--no-train", dest="train", action="store_false",
                        help="skip pretraining and the sweep (the notebooks still train what they miss)")
    parser.add_argument("--log-output", action="store_true", help="stream notebook cell outputs")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    params = dict(parse_param(p) for p in args.param)
    try:
        return run_suite(args.profile, only=args.only, params=params, dry_run=args.dry_run, train=args.train,
                         log_output=args.log_output, say=lambda m: print(m, flush=True))
    except (ValueError, FileNotFoundError) as err:
        print(f"[suite] error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
