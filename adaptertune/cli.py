"""``python -m adaptertune``: one entry point; each subcommand lives in a small ``_cmd_*`` function."""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from .adapter import AdapterConfig
from .config import PROFILES
from .regimes import file_methods


def _cmd_demo(args: argparse.Namespace) -> int:
    """Offline tour: inject adapters (identity at init), show Tab.1, save and reload an adapter file."""
    import torch

    from . import create_backbone, load_adapters, prepare, save_adapters
    from .paper.method import identity_at_init, parameter_table

    check = identity_at_init(args.backbone, 10, rank=args.rank, every=args.every)
    print(f"{check.summary()}\nidentical output at init: {check.equal_zero}")
    print("\nTab.1 — trainable parameters (C=100; counted on timm models built without weights)")
    table = parameter_table(num_classes=100, everys=(1, 2))
    cols = ["backbone", "method", "rank", "every", "trainable", "formula", "pct_of_full_ft", "pct_of_backbone"]
    print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    torch.manual_seed(0)
    model = prepare(create_backbone(args.backbone, 10, pretrained=False).eval(), "adapter", rank=args.rank,
                    every=args.every)
    x = torch.randn(4, *model.pretrained_cfg["input_size"])
    with torch.no_grad():  # pretend training moved the adapters, then round-trip through a file
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.01 * torch.randn_like(p))
        trained = model(x)
    with tempfile.TemporaryDirectory() as tmp:
        path = save_adapters(model, Path(tmp) / "demo.safetensors")
        fresh = create_backbone(args.backbone, 10, pretrained=False)
        fresh.load_state_dict({k: v for k, v in model.state_dict().items() if ".adapter." not in k}, strict=True)
        load_adapters(fresh, path)
        with torch.no_grad():
            reloaded = fresh.eval()(x)
        print(f"\nadapter file {path.name}: {path.stat().st_size:,} bytes; reloaded outputs identical: {torch.equal(trained, reloaded)}")
    return 0


def _field_parser(annotation: str):
    """argparse ``type`` for a RunConfig field from its annotation; optional fields also take ``none``."""
    base = float if "float" in annotation else int if "int" in annotation else str
    if "None" not in annotation:
        return base

    def parse(text: str):
        return None if text.lower() in ("none", "null") else base(text)

    parse.__name__ = base.__name__
    return parse


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    from dataclasses import MISSING, fields

    from .config import RunConfig

    for f in fields(RunConfig):
        flag = "--" + f.name.replace("_", "-")
        default = None if f.default is MISSING else f.default
        if "bool" in str(f.type):
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                                help=f"(default {default})")
        elif str(f.type).startswith("tuple"):
            parser.add_argument(flag, dest=f.name, type=int, nargs="*", default=argparse.SUPPRESS,
                                metavar=f.name.upper(), help=f"(default {default})")
        else:
            parser.add_argument(flag, dest=f.name, type=_field_parser(str(f.type)), default=argparse.SUPPRESS,
                                metavar=f.name.upper(), help="required" if f.default is MISSING else f"(default {default})")


def _cmd_run(args: argparse.Namespace) -> int:
    import json

    from .config import RunConfig
    from .training import distributed
    from .training.run import run

    values: dict = {}
    if args.config:
        import yaml

        values = yaml.safe_load(Path(args.config).read_text()) or {}
    values |= {k: getattr(args, k) for k in RunConfig.field_names() if hasattr(args, k)}
    missing = [k for k in ("dataset", "backbone", "method") if k not in values]
    if missing:
        raise ValueError(f"missing {missing}: pass e.g. --dataset fmnist_target --backbone mini-s --method adapter")
    cfg = RunConfig.from_dict(values)
    _threads(args.threads)
    try:
        result = run(cfg, root=args.root, progress=args.progress, force=args.force)
    finally:
        distributed.cleanup()
    if result.get("status") == "finished" and os.environ.get("RANK", "0") == "0":
        print(json.dumps({"run_id": result["run_id"], **result["metrics"], "trainable_params": result["params"]["trainable"],
                          "wall_s": round(result["wall_s"], 1)}, indent=None))
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from .training import distributed
    from .training.settings import settings_from
    from .training.sweep import load_sweep, parse_shard, select_shard, shard_from_env, sweep, with_settings

    if bool(args.file) == bool(args.grid):
        raise ValueError("pass either a sweep FILE or --grid NAME (with --profile), not both and not neither")
    shard = parse_shard(args.shard) if args.shard else None
    if args.grid and args.precision:  # the grids read it (paper.protocols.precision_of), as will the notebooks
        from .paper.protocols import PRECISION_ENV

        os.environ[PRECISION_ENV] = args.precision
    if args.grid and not args.dry_run:  # the paper's grids grow as the tuned protocol chooses its rates: train to the end
        from .paper.suite import train_grids

        try:
            return train_grids(args.profile, tuple(args.grid), shard=shard or shard_from_env(), threads=args.threads,
                               root=args.root, retry_failed=args.retry_failed, settings=settings_from(args),
                               steal=args.steal, say=lambda m: print(m, file=sys.stderr, flush=True))
        finally:
            distributed.cleanup()
    if args.grid:
        from .paper.experiments import all_configs, settled_runs

        configs = all_configs(args.profile, tuple(args.grid), settled_runs(args.root))
    else:
        configs = load_sweep(args.file)
        configs = [c.with_(precision=args.precision) for c in configs] if args.precision else configs
    if not args.dry_run:
        _threads(args.threads, shards=(shard or (0, 1))[1])  # an array's tasks are separate allocations: not sharing
    if args.dry_run:
        from .store import runs as run_store

        chosen = select_shard(configs, shard if shard is not None else shard_from_env())
        for cfg in chosen:
            extra = f" rank={cfg.rank} every={cfg.every}" if cfg.adapter_config() is not None else ""
            print(f"{cfg.run_id}  {run_store.run_status(cfg.run_id, args.root):8s}  {cfg.dataset} {cfg.backbone} "
                  f"{cfg.method}{extra} seed={cfg.seed} epochs={cfg.epochs}")
        print(f"{len(chosen)} of {len(configs)} run(s) in this shard")
        return 0
    try:
        summary = sweep(with_settings(configs, **settings_from(args)), shard=shard, root=args.root, progress=True,
                        retry_failed=args.retry_failed, verbose=args.verbose, steal=args.steal)
    finally:
        distributed.cleanup()
    return 1 if any(s["status"] == "failed" for s in summary) else 0


def _cmd_prepare(args: argparse.Namespace) -> int:
    from .paper.experiments import all_configs, settled_runs
    from .training.prepare import prepare_inputs

    runs = settled_runs(args.root)
    configs = all_configs(args.profile, tuple(args.grid), runs) if args.grid else all_configs(args.profile, runs=runs)
    prepare_inputs(configs, download=args.download or None, say=lambda m: print(m, file=sys.stderr, flush=True))
    return 0


def _cmd_pretrain_mini(args: argparse.Namespace) -> int:
    from .training.pretrain import pretrain_mini

    names = tuple(args.names.split(",")) if args.names else ("mini-s", "mini-b")
    _threads(args.threads)
    pretrain_mini(profile=args.profile, names=names, force=args.force, root=args.root, progress=args.progress)
    return 0


def _cmd_results(args: argparse.Namespace) -> int:
    from .store.table import format_table, load_results

    frame = load_results(args.root, status=None if args.all else "finished")
    print(format_table(frame, args.format))
    return 0


def _threads(requested: int | None, shards: int = 1) -> None:
    """Size the thread pool to this process's share of the cores (adaptertune.training.threads) and say so."""
    from .training.threads import apply_threads

    threads, why = apply_threads(requested, shards)
    print(f"[threads] {threads} ({why})", file=sys.stderr, flush=True)


THREADS_HELP = ("CPU threads for this process (default: $SLURM_CPUS_PER_TASK, $OMP_NUM_THREADS, the cores divided "
                "among shards, else all cores)")


def _cmd_predict(args: argparse.Namespace) -> int:
    import torch

    from .inference import (describe_inputs, describe_tasks, find_images, predict, sample_lines, score, score_lines,
                            write_predictions)
    from .store.serve import serve
    from .training.loop import show_progress

    items = find_images(args.images)
    model, where = serve(args.adapters, args.root, args.class_names, args.backbone, args.checkpoint, args.profile)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    print(describe_tasks(model, where))
    print(describe_inputs(model, len(items), device))
    result = predict(model, items, batch_size=args.batch_size, top_k=args.top_k, num_workers=args.num_workers,
                     progress=show_progress(args.progress))
    for path, why in result.skipped:
        print(f"skipped {path}: {why}", file=sys.stderr)
    decoded = len(items) - len(result.skipped)
    if result.skipped:
        print(f"skipped {len(result.skipped)} of {len(items)} image(s) that could not be decoded (listed on stderr)")
    if not decoded:
        raise ValueError("no image could be decoded: nothing to predict")
    out = write_predictions(result, args.out)
    print(f"{decoded} image(s) x {len(result.tasks)} task(s) -> {out}")
    print("\n".join(sample_lines(result, args.show) + score_lines(
        score(result, {n: list(model.task(n).class_names) for n in result.tasks}))))
    return 0


FIT_OVERRIDES = ("epochs", "warmup_epochs", "batch_size", "limit", "val_fraction", "pretrained")


def _fit_changes(args: argparse.Namespace) -> dict:
    return {k: getattr(args, k) for k in FIT_OVERRIDES if getattr(args, k, None) is not None}


def _rank(text: str) -> int | str:
    return "auto" if text == "auto" else int(text)


def _pinned_threads(args: argparse.Namespace) -> int | None:
    """--threads, else the profile's pinned count (mini: its numerics depend on it, so cached runs match)."""
    from .paper.protocols import protocol
    from .paper.userdata import default_profile

    return args.threads if args.threads is not None else protocol(args.profile or default_profile(args.backbone)).threads


def _cmd_fit(args: argparse.Namespace) -> int:
    from .paper.fit import fit

    _threads(_pinned_threads(args))
    budget = {} if args.budget is None else {"budget": args.budget}
    report = fit(args.data, args.backbone, method=args.method, rank=args.rank, profile=args.profile,
                 seeds=tuple(args.seeds) if args.seeds else None, out=args.out, root=args.root, verbose=args.verbose,
                 **budget, **_fit_changes(args))
    seeds = "" if len(report.seeds) < 2 else \
        f" (mean over {len(report.seeds)} seeds; the file holds seed {report.seeds[0]['seed']})"
    print(f"chosen lr {report.lr:g}; test acc " + (f"{report.test_acc:.2%}" if report.test_acc is not None else "-")
          + f"{seeds}; {report.adapter_file} ({report.file_bytes:,} bytes)\nuse it: {report.predict_command}")
    return 0


def _cmd_advise(args: argparse.Namespace) -> int:
    from .paper.advisor import advise

    _threads(_pinned_threads(args))
    advice = advise(args.data, args.backbone, profile=args.profile, root=args.root, verbose=args.verbose,
                    **_fit_changes(args))
    print(advice.markdown())
    return 0


def _add_fit_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", help="a registered dataset (python -m adaptertune.data list) or an ImageFolder path")
    parser.add_argument("--backbone", required=True, help="mini-s, mini-b, vit-s16, ... or any timm ViT")
    parser.add_argument("--profile", choices=PROFILES, default=None,
                        help="whose recipe and learning-rate grid (default: mini for mini backbones, else paper)")
    parser.add_argument("--root", help="run store root")
    parser.add_argument("--verbose", action="store_true", help="print each run's epoch lines too")
    parser.add_argument("--threads", type=int, help=THREADS_HELP)
    for name in FIT_OVERRIDES:
        flag = "--" + name.replace("_", "-")
        if name == "pretrained":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                                help="pretrained backbone weights (default true)")
        else:
            parser.add_argument(flag, type=float if name in ("warmup_epochs", "val_fraction") else int, default=None,
                                help="override the profile's recipe")


def build_parser() -> argparse.ArgumentParser:
    from .training.settings import add_precision_option, add_settings_options

    parser = argparse.ArgumentParser(prog="python -m adaptertune", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="offline tour: adapters, Tab.1 parameter counts, adapter files")
    demo.add_argument("--backbone", default="mini-s", help="backbone to inject into (default mini-s, random weights)")
    demo.add_argument("--rank", type=int, default=AdapterConfig.rank)
    demo.add_argument("--every", type=int, default=AdapterConfig.every)
    demo.set_defaults(func=_cmd_demo)

    run = sub.add_parser("run", help="train one run (any RunConfig field as --field-name)")
    run.add_argument("--config", help="YAML/JSON file with RunConfig fields (command-line flags override it)")
    run.add_argument("--root", help="run store root (default $ADAPTERTUNE_RESULTS or <repo>/results)")
    run.add_argument("--force", action="store_true", help="discard a stored run with the same run_id and retrain")
    run.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None, help="tqdm bars (default: on a terminal)")
    run.add_argument("--threads", type=int, help=THREADS_HELP)
    _add_config_options(run)
    run.set_defaults(func=_cmd_run)

    sw = sub.add_parser("sweep", help="run every missing run of a YAML sweep (base + grid); restartable")
    sw.add_argument("file", nargs="?", help="YAML with `base:` (RunConfig fields) and `grid:` (field: [values, ...])")
    sw.add_argument("--grid", action="append", metavar="NAME",
                    help="instead of a file: a built-in grid behind the paper's tables (main, rank, ...); repeatable")
    sw.add_argument("--profile", choices=PROFILES, default="mini", help="the profile of --grid (default mini)")
    sw.add_argument("--shard", help="i/n: run the i-th of n disjoint parts (default: SLURM array variables when set)")
    sw.add_argument("--dry-run", action="store_true", help="list the runs of this shard and their status; train nothing")
    sw.add_argument("--steal", action="store_true",
                    help="with --shard: once this shard is done, train the other shards' runs no process holds (needs "
                    "a file system where the per-run lock works: local, or one with flock)")
    sw.add_argument("--retry-failed", action="store_true", help="retrain runs whose status is failed")
    sw.add_argument("--verbose", action="store_true", help="print each run's epoch lines too")
    sw.add_argument("--root", help="run store root")
    sw.add_argument("--threads", type=int, help=THREADS_HELP)
    add_settings_options(sw)
    add_precision_option(sw)
    sw.set_defaults(func=_cmd_sweep)

    prep = sub.add_parser("prepare", help="fetch the datasets and pretrained weights of the paper grids once, before "
                          "shards start (they wait for it), and write the JPEG sets' pre-resized cache")
    prep.add_argument("--grid", action="append", metavar="NAME", help="only these grids (default: every grid)")
    prep.add_argument("--profile", choices=PROFILES, default="paper")
    prep.add_argument("--download", action="store_true", help="download what is missing (else: check, as offline)")
    prep.add_argument("--root", help="run store root (the tuned grids' chosen rates)")
    prep.set_defaults(func=_cmd_prepare)

    pre = sub.add_parser("pretrain-mini", help="pretrain the mini backbones on fmnist_source (cached)")
    pre.add_argument("--profile", default="mini", choices=("mini", "smoke"))
    pre.add_argument("--names", help="comma-separated mini backbones (default mini-s,mini-b)")
    pre.add_argument("--force", action="store_true", help="retrain even if cached weights exist")
    pre.add_argument("--root", help="run store root for the pretraining runs")
    pre.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    pre.add_argument("--threads", type=int, help=THREADS_HELP)
    pre.set_defaults(func=_cmd_pretrain_mini)

    pr = sub.add_parser("predict", help="top-k predictions of adapter files (or run ids) on image files; one frozen backbone")
    pr.add_argument("adapters", nargs="+", metavar="ADAPTER",
                    help="an adapter file or a run id of the store; NAME=ADAPTER names the task")
    pr.add_argument("--images", nargs="+", required=True, metavar="PATH",
                    help="image files, folders of images, or an ImageFolder tree <root>/<class>/<image> (then accuracy)")
    pr.add_argument("--out", default="predictions.csv", help="CSV or JSON file of predictions (default predictions.csv)")
    pr.add_argument("--top-k", type=int, default=5)
    pr.add_argument("--batch-size", type=int, default=64)
    pr.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    pr.add_argument("--class-names", action="append", default=[], metavar="[TASK=]FILE",
                    help="class names, one per line, for a file without a class-name table; repeatable")
    pr.add_argument("--backbone", help="backbone for adapter files (default: the name the first file records)")
    pr.add_argument("--checkpoint", help="local weights file for the backbone")
    pr.add_argument("--profile", default="mini", choices=("mini", "smoke"),
                    help="whose pretrained mini backbone to use for adapter files (default mini)")
    pr.add_argument("--root", help="run store root, for run ids")
    pr.add_argument("--num-workers", type=int, default=0, help="image-decoding worker processes")
    pr.add_argument("--show", type=int, default=3, help="predictions printed per task (default 3)")
    pr.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None, help="tqdm bar (default: on a terminal)")
    pr.set_defaults(func=_cmd_predict)

    ft = sub.add_parser("fit", help="choose the learning rate on validation (successive halving), train, write the "
                        "adapter file + report")
    _add_fit_options(ft)
    ft.add_argument("--method", default="adapter", choices=file_methods(),
                    help="what to train (default adapter): a method whose result is an adapter file")
    ft.add_argument("--rank", type=_rank, default=AdapterConfig.rank, help="an integer, or auto (the rank advisor)")
    ft.add_argument("--budget", type=float, default=None,
                    help="most the rate choice may cost beyond the final run, in full-length runs "
                    "(default: selection.DEFAULT_BUDGET)")
    ft.add_argument("--seeds", type=int, nargs="*", help="seeds of the final adapter (default: the selection seed)")
    ft.add_argument("--out", help="output folder (default fit-<data>-<backbone>-<method>)")
    ft.set_defaults(func=_cmd_fit)

    adv = sub.add_parser("advise", help="recommend an adapter rank from a short probe (the rank advisor)")
    _add_fit_options(adv)
    adv.set_defaults(func=_cmd_advise)

    res = sub.add_parser("results", help="table of finished runs in the store")
    res.add_argument("--root", help="run store root")
    res.add_argument("--format", default="markdown", choices=("markdown", "csv"))
    res.add_argument("--all", action="store_true", help="include running and failed runs")
    res.set_defaults(func=_cmd_results)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
