"""Before/after measurements for each knob that could make a training step faster, one process per knob,
variants timed round-robin against a baseline (``python benchmarks/ablations.py --backbone mini-s``).

Knobs: AdamW kernel (loop / foreach / fused), intra-op threads (1 / 2), bf16 autocast, torch.compile, what
the frozen backbone saves (a naive "frozen" model that still differentiates the backbone; an input that
requires grad), the adapter's scale multiply (the proposed core change: skip ``* scale`` when it is 1), and recomputing
the frozen MLPs' hidden layer to save memory.
Writes ``ablations.csv`` / ``ablations.md`` under ``--out``; not part of ``make bench`` (compile takes minutes).
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402
import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from adaptertune.inject import transformer_blocks  # noqa: E402
from benchmarks import measure as M  # noqa: E402
from benchmarks.bench import peak_memory  # noqa: E402
from benchmarks.configs import DEFAULT_BATCH, build, fixed_batch  # noqa: E402

CPU = torch.device("cpu")


def naive_frozen(model: nn.Module) -> nn.Module:
    """What a careless implementation does: backbone weights keep requires_grad, only the optimizer skips them."""
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def run_knob(name: str, variants: dict[str, Callable[[], None]], warmup: int, steps: int, min_seconds: float,
             batch: int, backbone: str) -> list[dict]:
    print(f"== {name}: {list(variants)}", flush=True)
    times = M.time_round_robin(variants, warmup, steps, CPU, log=lambda s: None, min_seconds=min_seconds)
    base = M.median(times[next(iter(variants))])
    rows = []
    for v, t in times.items():
        rows.append({"backbone": backbone, "knob": name, "variant": v, "batch": batch, "median_s": M.median(t),
                     "min_s": min(t), "rounds": len(t), "img_s": batch / M.median(t), "speedup_vs_first": base / M.median(t)})
        print(f"   {v:<40} {batch / M.median(t):9.1f} img/s  x{base / M.median(t):.3f}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="mini-s")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--min-seconds", type=float, default=15.0)
    p.add_argument("--knobs", default="optimizer,threads,precision,frozen,scale,memory,compile")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    name, bs = args.backbone, args.batch_size or DEFAULT_BATCH.get(args.backbone, 32)
    probe = build(name, "bare")
    depth = len(transformer_blocks(probe))
    x, y = fixed_batch(probe, bs)
    knobs = args.knobs.split(",")
    rows: list[dict] = []

    def trainer(model: nn.Module, optimizer: str = "foreach", precision: str = "fp32", threads: int = 2,
                inp: Tensor = x, fwd: Callable | None = None) -> Callable[[], None]:
        opt = torch.optim.AdamW([p for n, p in model.named_parameters() if p.requires_grad
                                 and (n.startswith("head.") or ".adapter." in n or getattr(model, "_all", False))],
                                lr=1e-3, weight_decay=0.05, **{"foreach": {"foreach": True}, "fused": {"fused": True},
                                                                "loop": {"foreach": False}}[optimizer])

        def step() -> None:
            torch.set_num_threads(threads)
            M.train_step(fwd or model, opt, inp, y, precision, CPU)
        return step

    def full(**kw) -> Callable[[], None]:
        m = build(name, "full")
        m._all = True
        return trainer(m, **kw)

    common = dict(warmup=args.warmup, steps=args.steps, min_seconds=args.min_seconds, batch=bs, backbone=name)
    if "optimizer" in knobs:
        rows += run_knob("AdamW kernel, full FT", {f"full, AdamW {k}": full(optimizer=k) for k in ("loop", "foreach", "fused")},
                         **common)
        rows += run_knob("AdamW kernel, adapter", {f"adapter, AdamW {k}": trainer(build(name, "adapter"), optimizer=k)
                                                   for k in ("loop", "foreach", "fused")}, **common)
    if "threads" in knobs:
        rows += run_knob("intra-op threads", {"adapter, 1 thread": trainer(build(name, "adapter"), threads=1),
                                              "adapter, 2 threads": trainer(build(name, "adapter"), threads=2)}, **common)
    if "precision" in knobs:
        rows += run_knob("precision", {"adapter fp32": trainer(build(name, "adapter")),
                                       "adapter bf16 autocast": trainer(build(name, "adapter"), precision="bf16"),
                                       "full fp32": full(), "full bf16 autocast": full(precision="bf16")}, **common)
    if "frozen" in knobs:
        xg = x.clone().requires_grad_(True)
        rows += run_knob("frozen backbone", {
            "adapter (frozen backbone)": trainer(build(name, "adapter")),
            "adapter, backbone requires_grad (naive)": trainer(naive_frozen(build(name, "adapter"))),
            "adapter start=L/2": trainer(build(name, "adapter-startL/2")),
            "adapter start=L/2, input requires grad": trainer(build(name, "adapter-startL/2"), inp=xg),
        }, **common)
    if "scale" in knobs:
        rows += run_knob("adapter hook, training", {"current: h + scale*A(h)": trainer(build(name, "adapter")),
                                                    "proposed: h + A(h) (scale 1)": trainer(build(name, "adapter", variant="unscaled-hook"))},
                         **common)
        models = {"bare": build(name, "bare"), "current hook": build(name, "adapter").eval(),
                  "proposed hook": build(name, "adapter", variant="unscaled-hook").eval()}
        rows += run_knob("adapter hook, inference", {k: (lambda m=m: M.infer_step(m, x, "fp32", CPU)) for k, m in models.items()},
                         **common)
    if "memory" in knobs:
        rows += run_knob("frozen MLP recompute (memory for time)", {
            "adapter": trainer(build(name, "adapter")),
            "adapter, recompute fc1+GELU in frozen MLPs": trainer(build(name, "adapter", variant="recompute-mlp")),
            "full": full()}, **common)
        for variant, regime in ((None, "full"), (None, "adapter"), ("recompute-mlp", "adapter")):
            mem = peak_memory({"backbone": name, "regime": regime, "rank": 16, "batch": bs, "device": "cpu", "threads": 2,
                               "optimizer": "foreach", "precision": "fp32", "variant": variant})
            label = regime + (f" + {variant}" if variant else "")
            print(f"   peak memory {label:<40} {mem.get('peak_bytes', float('nan')) / 2**20:9.1f} MB", flush=True)
            rows.append({"backbone": name, "knob": "peak memory (MB, fresh process)", "variant": label, "batch": bs,
                         "peak_mb": mem.get("peak_bytes", float("nan")) / 2**20})
    if "compile" in knobs:
        t0 = time.perf_counter()
        variants = {}
        for regime in ("full", "adapter"):
            m = build(name, regime)
            if regime == "full":
                m._all = True
            variants[f"{regime} eager"] = trainer(m)
            mc = build(name, regime)
            if regime == "full":
                mc._all = True
            variants[f"{regime} torch.compile"] = trainer(mc, fwd=M.Compiled(mc))
        rows += run_knob("torch.compile, training (first call compiles, in warm-up)", variants, **common)
        inf = {}
        for regime in ("bare", "adapter"):
            m = build(name, regime).eval()
            inf[f"{regime} eager"] = lambda m=m: M.infer_step(m, x, "fp32", CPU)
            mc = build(name, regime).eval()
            inf[f"{regime} torch.compile"] = lambda f=M.Compiled(mc): M.infer_step(f, x, "fp32", CPU)
        rows += run_knob("torch.compile, inference", inf, **common)
        print(f"   (compile knob took {time.perf_counter() - t0:.0f} s including compilation)")
    args.out.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame(rows)
    stem = f"ablations_{name}"
    df.to_csv(args.out / f"{stem}.csv", index=False)
    lines = [f"# Ablations on {name} (batch {bs}, depth {depth}, {torch.get_num_threads()} threads, torch {torch.__version__})", ""]
    for knob, g in df.groupby("knob", sort=False):
        if knob.startswith("peak memory"):
            lines += [f"**{knob}**", "", "| variant | peak MB |", "|---|---|"]
            lines += [f"| {r.variant} | {r.peak_mb:.0f} |" for r in g.itertuples()]
        else:
            lines += [f"**{knob}**", "", "| variant | img/s | × first | rounds |", "|---|---|---|---|"]
            lines += [f"| {r.variant} | {r.img_s:.1f} | {r.speedup_vs_first:.3f} | {int(r.rounds)} |" for r in g.itertuples()]
        lines.append("")
    (args.out / f"{stem}.md").write_text("\n".join(lines))
    print(f"wrote {args.out / (stem + '.md')}")


if __name__ == "__main__":
    main()
