"""``python -m adaptertune.data {list,download,check,export}``: get and inspect the datasets.

    python -m adaptertune.data list                        # names, classes, where the files go
    python -m adaptertune.data download cifar10 [--root D] # torchvision's download into data/datasets (or D)
    python -m adaptertune.data check fmnist_target         # load it and print split sizes / provenance
    python -m adaptertune.data export fmnist_target --out my_images --per-class 10   # PNGs to try `predict` on
"""
from __future__ import annotations

import argparse
import json
import sys

from . import DATASETS, DatasetNotFoundError, PROFILES, datasets_root, load_dataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adaptertune.data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the registry")
    for cmd in ("download", "check", "export"):
        p = sub.add_parser(cmd)
        p.add_argument("name", help=f"one of {sorted(DATASETS)} (check: or an ImageFolder path)")
        p.add_argument("--root", default=None, help="datasets folder (default: $ADAPTERTUNE_DATASETS or data/datasets)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--profile", choices=PROFILES, default=None, help="default: the dataset's own kind")
        if cmd == "export":
            p.add_argument("--out", required=True, help="folder for the ImageFolder tree <out>/<class>/<image>.png")
            p.add_argument("--split", default="test", choices=("train", "val", "test"))
            p.add_argument("--per-class", type=int, default=None, help="images per class (default: all)")
            p.add_argument("--limit", type=int, default=None, help="the run's `limit` (the same capped splits a run saw)")
    args = parser.parse_args(argv)
    if args.command == "list":
        for spec in DATASETS.values():
            where = datasets_root() / spec.folder if spec.kind == "paper" else spec.url
            print(f"{spec.name:15s} {spec.kind:6s} {spec.num_classes:4d} classes  {spec.description}\n"
                  f"{'':15s} files: {where}")
        return 0
    if args.command == "download" and args.name not in DATASETS:
        parser.error(f"download: {args.name!r} is not one of {sorted(DATASETS)}")
    kind = DATASETS[args.name].kind if args.name in DATASETS else "paper"
    profile = args.profile or ("paper" if kind == "paper" else "mini")
    try:
        splits = load_dataset(args.name, profile=profile, seed=args.seed, root=args.root,
                              download=args.command == "download", limit=getattr(args, "limit", None))
    except DatasetNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.command == "export":
        from .export import export_split

        written = export_split(splits, args.out, split=args.split, per_class=args.per_class)
        print(f"wrote {len(written)} {args.split} image(s) of {args.name} to {args.out}/<class>/")
        return 0
    print(json.dumps({k: splits.info[k] for k in ("name", "root", "sizes", "classes_found", "split_file")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
