"""Head-only vs full fine-tuning vs AdapterTune (and peft LoRA) side by side: throughput, memory, FLOPs.

    python benchmarks/bench.py                       # all four backbones, CPU defaults (~15 min on 2 cores)
    python benchmarks/bench.py --backbones mini-s --steps 10
    python benchmarks/bench.py --device cuda         # bf16 autocast + fused AdamW by default
    python benchmarks/bench.py --quick --out /tmp/q  # CI-size plumbing check (mini-s, tiny batch; seconds)

All regimes of one backbone live in one process and are timed round-robin (see ``measure.time_round_robin``): each
timed round is one interleaved repeat, and every ratio is reported as its median over the rounds with the spread;
``targets.py`` judges the targets from them. Peak memory comes from a fresh subprocess per configuration (see
``peakmem``). Results: CSV + Markdown + PNG under ``--out`` (default ``benchmarks/results``).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from adaptertune.inject import transformer_blocks  # noqa: E402
from benchmarks import measure as M  # noqa: E402
from benchmarks import report  # noqa: E402
from benchmarks.configs import (DEFAULT_BATCH, GPU_BATCH, INFERENCE_MODELS, RECOMPUTE_REGIMES, REGIME_BY_NAME,  # noqa: E402
                                build, default_regimes, fixed_batch, input_shape, lora_count, match_lora_rank)
from benchmarks.targets import MIN_REPEATS  # noqa: E402
from adaptertune import Adapter  # noqa: E402


# --quick: the smallest run that still goes through every instrument (timing, FLOPs, audit, memory, report)
QUICK = {"backbones": "mini-s", "batch_size": "8", "warmup": 1, "min_seconds": 0.0, "infer_steps": MIN_REPEATS,
         "memory_regimes": "full,adapter,adapter-recompute,adapter-recompute-half",
         "out": ROOT / "benchmarks" / "results" / "quick"}


def log(msg: str) -> None:
    print(msg, flush=True)


def parse_batches(text: str | None, backbones: list[str], device: torch.device) -> dict[str, int]:
    """``32`` for all, or ``mini-s=128,vit-s16=32``; unnamed backbones keep their default."""
    table = GPU_BATCH if device.type == "cuda" else DEFAULT_BATCH
    out = {b: table.get(b, 32) for b in backbones}
    if text:
        if "=" not in text:
            return {b: int(text) for b in backbones}
        for item in text.split(","):
            name, value = item.split("=")
            out[name.strip()] = int(value)
    return out


def peak_memory(spec: dict) -> dict:
    """Run ``benchmarks.peakmem`` in a fresh interpreter; glibc's mmap threshold fixed so RSS follows live tensors."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))
    proc = subprocess.run([sys.executable, "-m", "benchmarks.peakmem", json.dumps(spec)], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        log(f"    peak memory for {spec['regime']} failed: {proc.stderr.strip().splitlines()[-1:]}")
        return {}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_backbone(name: str, batch: int, args: argparse.Namespace, device: torch.device) -> list[dict]:
    t_start, load_start = time.perf_counter(), os.getloadavg()[0]
    regimes = [REGIME_BY_NAME[r] for r in args.regimes]
    probe = build(name, "bare")
    depth, dim = len(transformer_blocks(probe)), probe.embed_dim
    adapter_count = depth * Adapter.num_parameters(dim, args.rank)
    lora_rank = args.lora_rank or match_lora_rank(probe, adapter_count)
    log(f"== {name}: depth {depth}, width {dim}, input {input_shape(probe)}, batch {batch}; LoRA r={lora_rank}: "
        f"{lora_count(probe, lora_rank):,} LoRA params vs {adapter_count:,} adapter params (r={args.rank}, every=1), "
        "heads excluded")
    del probe
    torch.manual_seed(0)
    models = {r.name: build(name, r.name, rank=args.rank, lora_rank=lora_rank, device=device) for r in regimes}
    models["bare"] = build(name, "bare", device=device)
    x, y = fixed_batch(models["bare"], batch, device)

    x1, y1 = x[:1].clone(), y[:1].clone()  # a view of x would make the audit count x's whole storage as saved
    rows: dict[str, dict] = {}
    for r in regimes:
        m = models[r.name]
        audit = M.autograd_audit(m, x1, y1)
        m.zero_grad(set_to_none=True)
        rows[r.name] = {
            "backbone": name, "regime": r.name, "method": r.method, "batch": batch, "depth": depth, "dim": dim,
            "every": r.every if r.method == "adapter" else None,
            "start": r.start(depth) if r.method == "adapter" else None,
            "rank": lora_rank if r.method == "lora" else (args.rank if r.method == "adapter" else None),
            "trainable_params": M.trainable_parameters(m),
            "train_flops": M.step_flops(m, x1, y1) * batch,  # per-sample ops: exact scaling
            "saved_mb": audit.saved_bytes * batch / 2**20,
            "graph_nodes": audit.graph_nodes,
            "first_differentiated_block": audit.first_differentiated_block,
            "first_grad_output_block": audit.first_grad_output_block,
        }
    for n in INFERENCE_MODELS:
        if n in models:
            rows.setdefault(n, {"backbone": name, "regime": n, "method": n, "batch": batch, "depth": depth, "dim": dim,
                                "trainable_params": 0})
            rows[n]["infer_flops"] = M.step_flops(models[n], x1, y1, backward=False) * batch

    log(f"  set-up, FLOPs and autograd audit: {time.perf_counter() - t_start:.0f} s")
    fwd = {n: (M.Compiled(m, backend=args.compile_backend) if args.compile else m) for n, m in models.items()}
    opts = {r.name: M.make_optimizer(models[r.name], args.optimizer) for r in regimes}
    log(f"  training: {len(regimes)} regimes round-robin, {args.warmup} warm-up + >= {args.steps} timed rounds")
    steps = {r.name: (lambda n=r.name: M.train_step(fwd[n], opts[n], x, y, args.precision, device, args.clip))  # noqa: F821
             for r in regimes}
    train_times = M.time_round_robin(steps, args.warmup, args.steps, device, log, min_seconds=args.min_seconds)
    for r in regimes:
        st = M.optimizer_state_bytes(opts[r.name])
        t = train_times[r.name]
        rows[r.name].update(optimizer_state_bytes=st.moments, optimizer_step_counter_bytes=st.counters,
                            train_step_s=M.median(t), train_step_s_min=min(t), train_step_s_max=max(t),
                            train_img_s=batch / M.median(t), rounds=len(t))
        if "full" in train_times:  # throughput relative to full FT, per round: t_full / t_regime
            rows[r.name].update(M.ratio_stats(train_times["full"], t).to_dict("speedup_vs_full"))
        if r.name in RECOMPUTE_REGIMES and "adapter" in train_times:  # relative to the plain adapter
            rows[r.name].update(M.ratio_stats(train_times["adapter"], t).to_dict("speed_vs_adapter"))
    del opts
    gc.collect()
    log(f"  ... training timed by {time.perf_counter() - t_start:.0f} s")

    infer = [n for n in INFERENCE_MODELS if n in models]
    for n in infer:
        models[n].eval()
    reps = max(args.steps, args.infer_steps)
    log(f"  inference: {infer} round-robin, {args.warmup} warm-up + >= {reps} timed rounds")
    infer_times = M.time_round_robin({n: (lambda n=n: M.infer_step(fwd[n], x, args.precision, device)) for n in infer},  # noqa: F821
                                     args.warmup, reps, device, log, min_seconds=args.min_seconds / 2)
    for n in infer:
        t = infer_times[n]
        rows[n].update(infer_s=M.median(t), infer_s_min=min(t), infer_s_max=max(t), infer_img_s=batch / M.median(t),
                       **M.ratio_stats(t, infer_times["bare"]).map(lambda v: 100 * (v - 1)).to_dict("infer_overhead_pct"))

    if "head" in rows:
        cached = M.cached_head_timing(models["bare"], x, y, args.optimizer, args.precision, device)
        rows["head"].update(cached_extract_s=cached.extract_s, cached_head_step_s=cached.cached_step_s)
    del models, fwd
    gc.collect()
    log(f"  ... inference and cached-feature head timed by {time.perf_counter() - t_start:.0f} s")

    mem_regimes = [r for r in regimes if r.name in args.memory_regimes]
    if mem_regimes:
        log(f"  peak memory: one fresh process per regime ({[r.name for r in mem_regimes]})")
        for r in mem_regimes:
            spec = {"backbone": name, "regime": r.name, "rank": args.rank, "lora_rank": lora_rank, "batch": batch,
                    "device": str(device), "threads": args.threads, "optimizer": args.optimizer,
                    "precision": args.precision}
            mem = peak_memory(spec)
            rows[r.name].update({(k[:-6] + "_mb" if k.endswith("_bytes") else k): (v / 2**20 if k.endswith("_bytes") else v)
                                 for k, v in mem.items()})
    for row in rows.values():
        row.update(load_avg_start=load_start, load_avg_end=os.getloadavg()[0])
    log(f"  {name} done in {time.perf_counter() - t_start:.0f} s (1-min load average {load_start:.2f} -> "
        f"{os.getloadavg()[0]:.2f})")
    return list(rows.values())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--backbones", default="mini-s,mini-b,vit-s16,vit-b16", help="comma-separated backbone names")
    p.add_argument("--batch-size", default=None, help=f"one int, or name=int pairs; CPU defaults {DEFAULT_BATCH}, "
                                                      f"CUDA defaults {GPU_BATCH}")
    p.add_argument("--steps", type=int, default=MIN_REPEATS,
                   help=f"timed rounds (one step per regime each: one interleaved repeat) after warm-up; targets need "
                        f">= {MIN_REPEATS}")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    p.add_argument("--min-seconds", type=float, default=20.0,
                   help="fast models get extra timed training rounds until they fill about this many seconds")
    p.add_argument("--infer-steps", type=int, default=7, help="timed inference rounds (at least --steps)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                   help="auto: bf16 autocast on CUDA, fp32 on CPU (bf16 measured slower on CPUs without AMX)")
    p.add_argument("--optimizer", default="auto", choices=["auto", "foreach", "fused", "loop"],
                   help="AdamW kernel; auto: fused on CUDA, foreach on CPU")
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1), help="torch.set_num_threads")
    p.add_argument("--rank", type=int, default=16, help="adapter rank")
    p.add_argument("--lora-rank", type=int, default=None, help="default: matched to the adapters' trainable count")
    p.add_argument("--regimes", default=",".join(default_regimes()), help="default: all (LoRA only with peft installed)")
    p.add_argument("--clip", type=float, default=None, help="gradient clipping norm inside the step (off by default)")
    p.add_argument("--compile", action="store_true", help="torch.compile every model (eager fallback with a warning)")
    p.add_argument("--compile-backend", default="inductor",
                   help="torch.compile backend (inductor; 'eager' traces without code generation: a quick plumbing check)")
    p.add_argument("--memory-regimes", default="head,full,adapter,adapter-recompute,adapter-recompute-half,"
                   "adapter-startL/2,lora",
                   help="regimes whose peak memory is measured (one fresh process each, ~1 step; only those also in "
                        "--regimes); 'all' or '' (none)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--quick", action="store_true",
                   help="CI-size plumbing check in seconds (mini-s, batch 8, no minimum duration, 4 memory regimes, "
                        "into benchmarks/results/quick/ unless given explicitly); the report is stamped QUICK")
    args = p.parse_args(argv)
    if args.quick:
        for name, value in QUICK.items():
            if getattr(args, name) == p.get_default(name):
                setattr(args, name, value)
    args.backbones = [b.strip() for b in args.backbones.split(",") if b.strip()]
    args.regimes = [r.strip() for r in args.regimes.split(",") if r.strip()]
    args.memory_regimes = args.regimes if args.memory_regimes == "all" else \
        [r.strip() for r in args.memory_regimes.split(",") if r.strip() and r.strip() in args.regimes]
    unknown = sorted(set(args.regimes) - set(REGIME_BY_NAME))
    if unknown:
        p.error(f"unknown regimes {unknown}; choose from {sorted(REGIME_BY_NAME)}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    if args.precision == "auto":
        args.precision = "bf16" if device.type == "cuda" else "fp32"
    if args.optimizer == "auto":
        args.optimizer = "fused" if device.type == "cuda" else "foreach"
    torch.set_num_threads(args.threads)
    batches = parse_batches(args.batch_size, args.backbones, device)
    machine = report.machine_info(device, args)
    log(f"machine: {machine}")
    t0 = time.perf_counter()
    rows = []
    for name in args.backbones:
        rows += bench_backbone(name, batches[name], args, device)
        report.write_all(rows, machine, args.out)  # partial results survive an interrupted run
    machine["wall_s"] = round(time.perf_counter() - t0, 1)
    paths = report.write_all(rows, machine, args.out, plot=True)
    print(report.markdown_ratios(report.ratios(rows)))
    log(f"wrote {', '.join(str(p) for p in paths)} in {machine['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
