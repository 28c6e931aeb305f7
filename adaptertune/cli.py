"""``python -m adaptertune``: one entry point; each subcommand lives in a small ``_cmd_*`` function."""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path


def _cmd_demo(args: argparse.Namespace) -> int:
    """Offline tour: build a small ViT, inject adapters, show Tab.1, save and reload an adapter file."""
    import torch

    from . import count_parameters, create_backbone, load_adapters, prepare, save_adapters
    from .params_table import parameter_table

    torch.manual_seed(0)
    model = create_backbone(args.backbone, 10, pretrained=False).eval()
    x = torch.randn(4, *model.pretrained_cfg["input_size"])
    with torch.no_grad():
        before = model(x)
    prepare(model, "adapter", rank=args.rank, every=args.every)
    with torch.no_grad():
        after = model(x)
    counts = count_parameters(model)
    print(f"{args.backbone}: adapters r={args.rank} every={args.every} -> trainable {counts.trainable:,} of {counts.total:,} "
          f"({100 * counts.fraction:.2f}%); identical output at init: {torch.equal(before, after)}")
    print("\nTab.1 — trainable parameters (C=100; counted on timm models built without weights)")
    table = parameter_table(num_classes=100, everys=(1, 2))
    cols = ["backbone", "method", "rank", "every", "trainable", "formula", "pct_of_full"]
    print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m adaptertune", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="offline tour: adapters, Tab.1 parameter counts, adapter files")
    demo.add_argument("--backbone", default="mini-s", help="backbone to inject into (default mini-s, random weights)")
    demo.add_argument("--rank", type=int, default=16)
    demo.add_argument("--every", type=int, default=1)
    demo.set_defaults(func=_cmd_demo)
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
