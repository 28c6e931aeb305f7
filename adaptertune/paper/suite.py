"""``python -m adaptertune.paper.suite --profile mini|smoke|paper [--dry-run] [--only 03]``: every table and figure.

Order: check the notebooks' parameters (an unknown one is an error before any work), plan the runs (count,
what is cached, an ETA; GPU-hours for ``paper``), pretrain the mini backbones if missing, train every missing
run of every grid (the run store makes this a no-op when all are cached), execute the notebooks with
papermill into ``notebooks/executed/<profile>/``, render each to HTML and write
``figures/appendix/<profile>/index.html``. A failing notebook stops the suite, naming the notebook and
the cell; the executed notebook with its traceback stays on disk. The notebooks only read the store: this is
where training happens.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ..profiles import PROFILES, profile_record
from ..training.pretrain import pretrain_mini
from ..training.settings import add_precision_option, add_settings_options, settings_from
from ..training.sweep import sweep, with_settings
from ..training.threads import apply_threads
from . import claims, experiments, readme, store_time
from .notebooks import (NotebookFailed, appendix_dir, check_parameters, compare_with_committed, executed_dir,
                        execute_all, notebook_title, notebook_workers, notebooks, parse_param, render_html,
                        write_index)
from .plan import describe_plan, plan_frame, write_plan
from .protocols import PRECISION_ENV, include_beyond
from .tuning import DIVERGED


def ensure_backbones(profile: str, verbose: bool = False, root: str | Path | None = None) -> dict:
    """Pretrain the mini backbones of ``profile`` if missing (cached after the first call); paper: nothing to do."""
    if not profile_record(profile).pretrains_backbones:
        return {}
    return pretrain_mini(profile, names=experiments.protocol(profile).pretrained_backbones(), verbose=verbose, root=root)


def train_grids(profile: str, names: tuple[str, ...] = experiments.GRIDS, shard: tuple[int, int] | None = None,
                threads: int | None = None, root: str | Path | None = None, retry_failed: bool = False,
                settings: dict | None = None, steal: bool = False, say=print) -> int:
    """Pretrain what the grids need, then sweep until they stop growing (a tuned cell's final runs appear once its
    selection runs have settled). Returns 0, or 1 when a run failed for another reason than a diverging loss (a
    diverged candidate learning rate is a result of the search). ``threads`` defaults to the profile's pinned count;
    ``settings``: this process's device, num_workers, compile (``training.sweep.with_settings``; run ids unchanged);
    ``steal``: take other shards' free runs once this one's are done (``training.sweep.sweep``)."""
    pinned = experiments.protocol(profile).threads
    used, why = apply_threads(threads if threads is not None else pinned, shard[1] if shard else 1)
    if pinned is not None and used != pinned:
        say(f"[suite] warning: profile {profile} pins {pinned} threads (its numbers depend on it); running with {used}")
    say(f"[suite] {used} CPU thread(s) per run ({'profile ' + profile if threads is None and pinned else why})")
    if profile_record(profile).pretrains_backbones:
        say(f"[suite] mini backbones ({profile}): pretraining if missing")
        ensure_backbones(profile, verbose=True, root=root)
    seen: set[str] = set()
    for _ in range(len(names) + 2):  # each round can only unlock runs that depend on the previous one's
        configs = experiments.all_configs(profile, names, experiments.settled_runs(root))
        if {c.run_id for c in configs} <= seen:
            waiting = sum(experiments.pending_cells(n, profile, experiments.settled_runs(root)) for n in names)
            if waiting:
                say(f"[suite] {waiting} tuned-protocol cell(s) still wait for a learning-rate choice: a selection run "
                    "failed earlier; `python -m adaptertune sweep --retry-failed` retrains failed runs")
            return 0
        seen |= {c.run_id for c in configs}
        summary = sweep(with_settings(configs, **(settings or {})), shard=shard, root=root, progress=True,
                        retry_failed=retry_failed and not seen, steal=steal)
        broken = [x for x in summary if x["status"] == "failed" and x["ran"]
                  and not str(x.get("error", "")).startswith(DIVERGED)]
        if broken:
            say(f"[suite] {len(broken)} run(s) failed: " + ", ".join(f"{x['run_id']} ({x['dataset']}/{x['backbone']}/"
                                                                     f"{x['method']}): {x.get('error')}" for x in broken)
                + "; see results/runs/<run_id>/result.json; retry with `python -m adaptertune sweep --retry-failed`")
            return 1
    return 0


def shard_count(profile: str, cores: int | None = None) -> int:
    """Shard processes a pass uses: one per group of the profile's pinned threads (mini: one per core), else one."""
    pinned = experiments.protocol(profile).threads
    return max(1, (cores or os.cpu_count() or 1) // pinned) if pinned else 1


def train_sharded(profile: str, shards: int, names: tuple[str, ...] = experiments.GRIDS, say=print,
                  rounds: int = 4) -> int:
    """Train the grids in ``shards`` parallel ``sweep --shard i/n --steal`` processes (hash shards and per-run locks
    keep them apart; each runs on its pinned threads, and takes the others' free runs once its own are done, so no
    core idles while runs are left), again while a round leaves runs to train: a tuned cell's final runs appear only
    once its selection runs have settled."""
    ensure_backbones(profile, verbose=True)  # once, before the shards start
    grid_args = [a for name in names for a in ("--grid", name)]
    for round_ in range(1, rounds + 1):
        say(f"[suite] training round {round_}: {shards} shard processes")
        procs = [subprocess.Popen([sys.executable, "-m", "adaptertune", "sweep", "--profile", profile, *grid_args,
                                   "--shard", f"{i}/{shards}", "--steal"]) for i in range(shards)]
        codes = [p.wait() for p in procs]
        if any(codes):
            say(f"[suite] a shard exited with {max(codes)}: see its lines above")
            return 1
        left = experiments.load_grid(profile, *names)
        if not left.missing and not left.pending:
            return 0
    say(f"[suite] runs still missing after {rounds} rounds of shards: {len(left.missing)}; one more pass trains them")
    return train_grids(profile, names, say=say)


def run_suite(profile: str, only: list[str] | None = None, params: dict | None = None, dry_run: bool = False,
              train: bool = True, log_output: bool = False, settings: dict | None = None, say=print) -> int:
    """The whole pipeline; returns a process exit code (0 ok, 1 a run or notebook failed)."""
    if profile not in PROFILES:
        raise ValueError(f"profile={profile!r} is not allowed: choose one of {PROFILES}")
    t0 = time.perf_counter()
    nbs = notebooks(only)
    given = {"profile": profile, **(params or {})}
    check_parameters(nbs, given)
    table = plan_frame(profile)
    say(describe_plan(profile, table))
    if profile == "paper":  # the modelled GPU-hours README and docs include
        say(f"[suite] plan by part on 1 and 8 GPUs: {write_plan(profile, table)}")
    if dry_run:
        cols = ["run_id", "grids", "dataset", "backbone", "method", "pretrained", "rank", "every", "start", "init",
                "scale", "lr", "weight_decay", "seed", "epochs", "limit", "status", "est_s"]
        say(table[cols].to_string(index=False, float_format=lambda v: f"{v:g}"))
        say(f"[suite] dry run: nothing trained; notebooks that would run: {[nb.stem for nb in nbs]}")
        return 0
    shards = shard_count(profile)
    defaults = not settings or all(v is None for v in settings.values())  # device/workers/compile: this process only
    if train and len(table) and (table["status"] == "finished").all():  # no shard processes to start for nothing
        say("[suite] every planned run is in the store: nothing to train")
    elif train and defaults and shards > 1:
        if train_sharded(profile, shards, say=say) != 0:
            return 1
    elif train and train_grids(profile, settings=settings, say=say) != 0:
        return 1
    if only is None:  # a full pass records every notebook's verdicts afresh
        shutil.rmtree(claims.verdicts_dir(profile), ignore_errors=True)
    pages: dict[int, tuple[Path, str, float]] = {}

    def rendered(k: int, nb: Path, secs: float) -> None:
        out = executed_dir(profile) / nb.name
        pages[k] = (render_html(out, appendix_dir(profile)), notebook_title(out), secs)
        say(f"[suite] notebook {k + 1}/{len(nbs)} {nb.stem} done in {secs:.0f} s -> {pages[k][0]}")

    workers = 1 if log_output else notebook_workers()  # streamed cell outputs stay readable one notebook at a time
    say(f"[suite] executing {len(nbs)} notebook(s), {workers} at a time: {', '.join(nb.stem for nb in nbs)}")
    try:
        execute_all(nbs, executed_dir(profile), given, log_output=log_output, workers=workers, on_done=rendered)
    except NotebookFailed as err:
        say(f"[suite] FAILED: {err}")
        return 1
    in_order = [pages[k] for k in sorted(pages)]
    if only is None or in_order:
        index = write_index(profile, in_order, appendix_dir(profile))
        say(f"[suite] appendix: {index}")
    if only is None:
        written = claims.assemble(profile)
        say(f"[suite] claims: {written['claims']}; controls: {written['controls']}")
        say("[suite] verdict stability: " + written["stability"].read_text().splitlines()[0])
        if profile_record(profile).documented:  # the README and docs include its results from their files
            loaded = experiments.load_grid(profile)
            say(f"[suite] training time by CPU: {store_time.write(loaded.runs, loaded.store, profile)}")
            refreshed = readme.sync_all(only="figures/")
            say(f"[suite] documents: {sum(map(len, refreshed.values()))} included block(s) refreshed from figures/")
        say(compare_with_committed(profile))
    say(f"[suite] profile {profile} done in {time.perf_counter() - t0:.0f} s")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m adaptertune.paper.suite", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=PROFILES, default="mini")
    parser.add_argument("--dry-run", action="store_true", help="list the runs and their status; train and execute nothing")
    parser.add_argument("--only", action="append", metavar="PREFIX",
                        help="run only notebooks whose name starts with PREFIX (e.g. 03); repeatable")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="extra notebook parameter (must be declared by each notebook run)")
    parser.add_argument("--no-train", dest="train", action="store_false",
                        help="skip pretraining and the sweep: the notebooks render what the store holds")
    parser.add_argument("--log-output", action="store_true", help="stream notebook cell outputs")
    add_settings_options(parser)
    add_precision_option(parser)
    parser.add_argument("--beyond", action="store_true",
                        help="add the profile's optional beyond-the-paper regimes (LoRA, BitFit) to the tuned protocol's "
                             "grids: the paper profile's plan, GPU-hour estimate and sweep with them (off by default)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    params = dict(parse_param(p) for p in args.param)
    if args.precision:  # the grids and the notebooks (papermill inherits the environment) read it
        os.environ[PRECISION_ENV] = args.precision
    if args.beyond:
        include_beyond(args.profile)
    try:
        return run_suite(args.profile, only=args.only, params=params, dry_run=args.dry_run, train=args.train,
                         log_output=args.log_output, say=lambda m: print(m, flush=True),
                         settings=settings_from(args))
    except (ValueError, FileNotFoundError) as err:
        print(f"[suite] error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
