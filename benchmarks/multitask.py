"""Many task adapters on one frozen backbone: a mixed batch vs one model per task vs peft's mixed-adapter LoRA batch.

    python benchmarks/multitask.py                    # mini-s and ViT-S/16, N = 1, 4, 16 tasks (CPU defaults)
    python benchmarks/multitask.py --device cuda      # bf16 autocast, GPU batch sizes
    python benchmarks/multitask.py --quick            # seconds, plumbing only (what the test runs)

Per backbone, everything is timed round-robin in one process (``measure.time_round_robin``; ratios are medians of
per-round ratios): one single-task model on a batch of B images (the reference); ``MultiTask`` on a mixed batch of
the same B images spread over N tasks, in its default batched mode (the targets) and in exact mode (one smaller
pass per task; for reference); looping over N single-task models, each on its own images; peft LoRA with N
adapters (and N heads) on the same mixed batch (``adapter_names``), at the adapters' trainable-parameter count; and
``forward_all`` of 4 tasks with start = L/2 vs 4 separate passes. Memory: the bytes one more task adds (the task's
tensors, and the process's resident memory / CUDA allocation measured around adding 15 tasks) vs a whole
single-task model per task. Weights are random: speed and memory do not depend on them. Agreement: the batched
mode's logits (fp32, N = the largest N) against the single-task models', within the library's stated tolerance.
Results: ``multitask.csv``, ``multitask.md`` (targets as pass/fail) and ``multitask.png`` under ``--out``.
"""
from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402
import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402

import adaptertune as at  # noqa: E402
from adaptertune.inject import transformer_blocks  # noqa: E402
from adaptertune.multitask import BATCHED_ATOL, BATCHED_RTOL  # noqa: E402
from benchmarks import measure as M  # noqa: E402
from benchmarks import report  # noqa: E402
from benchmarks.configs import (DEFAULT_BATCH, GPU_BATCH, LORA_TARGETS, NUM_CLASSES, fixed_batch,  # noqa: E402
                                lora_count, match_lora_rank)
from benchmarks.peakmem import release_freed_memory, rss_bytes  # noqa: E402

# metric -> (target text, check); the targets, evaluated on the measured numbers
TARGETS = {
    "mixed_vs_single": ("≥ 0.9", lambda v: v >= 0.9),
    "forward_all_vs_separate": ("≤ 0.65", lambda v: v <= 0.65),
    "task_tensor_growth_exact": ("= task tensors", lambda v: bool(v)),
    "batched_close": (f"allclose (rtol {BATCHED_RTOL:g}, atol {BATCHED_ATOL:g}), same classes", lambda v: bool(v)),
}


def log(msg: str) -> None:
    print(msg, flush=True)


def single_task_model(backbone: nn.Module, name: str, file: Path, device: torch.device) -> nn.Module:
    """A whole model for one task: its own copy of the backbone with the task's adapters and head."""
    model = at.create_backbone(name, NUM_CLASSES, pretrained=False)
    model.load_state_dict({k: v for k, v in backbone.state_dict().items() if not k.startswith("head.")}, strict=False)
    return at.load_adapters(model, file).to(device).eval()


def task_files(backbone: nn.Module, name: str, count: int, rank: int, start: int, folder: Path, tag: str) -> list[Path]:
    """``count`` adapter files on ``backbone`` with random (non-zero) adapters and heads of NUM_CLASSES outputs."""
    files = []
    for k in range(count):
        model = at.create_backbone(name, NUM_CLASSES, pretrained=False)
        model.load_state_dict({n: v for n, v in backbone.state_dict().items() if not n.startswith("head.")}, strict=False)
        torch.manual_seed(1000 + k)
        at.prepare(model, "adapter", rank=rank, start=start)
        with torch.no_grad():
            for p in model.parameters():
                if p.requires_grad:
                    p.add_(0.02 * torch.randn_like(p))
        files.append(at.save_adapters(model, folder / f"{tag}{k}.safetensors"))
    return files


def lora_mixed(backbone: nn.Module, name: str, n_tasks: int, lora_rank: int, device: torch.device) -> nn.Module | None:
    """peft LoRA with ``n_tasks`` adapters and a head each (modules_to_save), or None without peft (the bench extra)."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        return None
    model = at.create_backbone(name, NUM_CLASSES, pretrained=False)
    model.load_state_dict(backbone.state_dict(), strict=False)
    config = LoraConfig(r=lora_rank, lora_alpha=lora_rank, lora_dropout=0.0, target_modules=LORA_TARGETS,
                        modules_to_save=["head"])
    model = get_peft_model(model, config, adapter_name="t0")
    for k in range(1, n_tasks):
        model.add_adapter(f"t{k}", config)
    torch.manual_seed(7)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:  # zero-initialised: give them values so no branch is skipped as a no-op
                p.add_(0.02 * torch.randn_like(p))
    return model.to(device).eval()


def mixed_tasks(batch: int, n_tasks: int) -> list[int]:
    """A balanced, shuffled assignment of ``batch`` images to ``n_tasks`` tasks (seeded)."""
    order = torch.randperm(batch, generator=torch.Generator().manual_seed(n_tasks))
    return [int(i) % n_tasks for i in order]


def agreement(mt: at.MultiTask, singles: list[nn.Module], x: Tensor, tasks: list[int]) -> dict:
    """The batched mode's logits (fp32) against each task's single-task model on that task's images."""
    diff, close, same = 0.0, True, True
    with torch.no_grad():
        out = mt(x, tasks)
        for k in sorted(set(tasks)):
            rows = [i for i, t in enumerate(tasks) if t == k]
            ref = singles[k](x[rows])
            got = torch.stack([out[i] for i in rows])
            diff = max(diff, float((got - ref).abs().max()))
            close &= torch.allclose(got, ref, rtol=BATCHED_RTOL, atol=BATCHED_ATOL)
            same &= torch.equal(got.argmax(1), ref.argmax(1))
    return {"batched_max_abs_diff": diff, "batched_close": close and same}


def memory_per_task(mt: at.MultiTask, files: list[Path], device: torch.device) -> tuple[float, int]:
    """Measured memory one more task adds (CUDA allocation, else resident set) and the task's tensor bytes."""
    def now() -> int:
        release_freed_memory()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            return torch.cuda.memory_allocated(device)
        return rss_bytes()

    before = now()
    infos = [mt.add_task(f"extra{k}", f) for k, f in enumerate(files)]
    grown = now() - before
    for k in range(len(files)):
        mt.remove_task(f"extra{k}")
    return grown / len(files), infos[0].nbytes


def tensor_bytes(module: nn.Module) -> int:
    """Bytes of parameters and buffers, each storage once (a shared backbone counts once)."""
    seen: dict[int, int] = {}
    for t in list(module.parameters()) + list(module.buffers()):
        s = t.untyped_storage()
        seen[s.data_ptr()] = s.nbytes()
    return sum(seen.values())


def bench_backbone(name: str, batch: int, args: argparse.Namespace, device: torch.device, folder: Path) -> list[dict]:
    t0 = time.perf_counter()
    torch.manual_seed(0)
    backbone = at.create_backbone(name, NUM_CLASSES, pretrained=False).eval()
    depth, dim = len(transformer_blocks(backbone)), backbone.embed_dim
    n_max, half = max(args.tasks), depth // 2
    files = task_files(backbone, name, n_max, args.rank, 0, folder, f"{name}-mixed")
    half_files = task_files(backbone, name, 4, args.rank, half, folder, f"{name}-half")
    adapter_count = depth * at.Adapter.num_parameters(dim, args.rank)
    lora_rank = match_lora_rank(backbone, adapter_count)
    log(f"== {name}: depth {depth}, width {dim}, batch {batch}, tasks {args.tasks}; adapters r={args.rank} "
        f"({adapter_count:,} params per task), LoRA r={lora_rank} ({lora_count(backbone, lora_rank):,}), heads excluded")
    shared = backbone.to(device)
    singles = [single_task_model(backbone, name, f, device) for f in files]
    halves = [single_task_model(backbone, name, f, device) for f in half_files]
    x, _ = fixed_batch(backbone, batch, device)
    multi = {n: at.MultiTask(shared, {f"t{k}": files[k] for k in range(n)}).to(device) for n in args.tasks}
    fa = at.MultiTask(shared, {f"h{k}": half_files[k] for k in range(4)}).to(device)
    loras = {n: lora_mixed(backbone, name, n, lora_rank, device) for n in args.tasks} if not args.no_lora else {}
    if loras and any(v is None for v in loras.values()):
        log("  peft is not installed (pip install -e '.[bench]'): the LoRA rows are skipped")
        loras = {}
    assignment = {n: mixed_tasks(batch, n) for n in args.tasks}
    rows_of = {n: [torch.tensor([i for i, t in enumerate(assignment[n]) if t == k], device=device) for k in range(n)]
               for n in args.tasks}

    def run(fn: Callable[[Tensor], object]) -> Callable[[], None]:
        return lambda: M.infer_step(fn, x, args.precision, device)

    fns = {"single": run(singles[0])}
    for n in args.tasks:
        fns[f"mixed-N{n}"] = run(lambda x, n=n: multi[n](x, assignment[n]))
        fns[f"mixed-exact-N{n}"] = run(lambda x, n=n: multi[n](x, assignment[n], mode="exact"))
        fns[f"loop-N{n}"] = run(lambda x, n=n: [singles[k](x.index_select(0, rows_of[n][k])) for k in range(n)])
        if loras:
            names = [f"t{t}" for t in assignment[n]]
            fns[f"lora-mixed-N{n}"] = run(lambda x, n=n, names=names: loras[n](x, adapter_names=names))
    if loras:
        fns["lora-single"] = run(loras[min(args.tasks)])  # the active adapter t0, no per-image routing
    fns["forward_all-N4"] = run(lambda x: fa.forward_all(x))
    fns["separate-N4"] = run(lambda x: [m(x) for m in halves])
    log(f"  set-up {time.perf_counter() - t0:.0f} s; timing {len(fns)} forward passes round-robin")
    times = M.time_round_robin(fns, args.warmup, args.steps, device, log, min_seconds=args.min_seconds)

    per_task_measured, per_task_tensors = memory_per_task(multi[min(args.tasks)], files[: min(15, n_max)] or files, device)
    single_bytes = tensor_bytes(singles[0])
    agree = agreement(multi[n_max], singles, x, assignment[n_max])
    rows = []
    for mode, t in times.items():
        n = int(mode.rsplit("N", 1)[1]) if "-N" in mode else 1
        reference = "separate-N4" if mode == "forward_all-N4" else "single"
        row = {"backbone": name, "mode": mode.rsplit("-N", 1)[0], "tasks": n, "batch": batch, "depth": depth, "dim": dim,
               "rank": lora_rank if mode.startswith("lora") else args.rank, "infer_s": M.median(t),
               "infer_s_min": min(t), "infer_s_max": max(t), "img_s": batch / M.median(t),
               "throughput_vs_single": M.paired_ratio(times["single"], t),
               "time_vs_reference": M.paired_ratio(t, times[reference]), "reference": reference}
        if mode.startswith("mixed"):
            row.update(model_bytes=tensor_bytes(multi[n]), separate_models_bytes=n * single_bytes)
        if mode == "forward_all-N4":
            row.update(block_fraction=fa.cost().fraction, start=half)
        rows.append(row)
    growth = [tensor_bytes(multi[n]) - tensor_bytes(multi[min(args.tasks)]) for n in args.tasks]
    for row in rows:
        row.update(task_tensor_bytes=per_task_tensors, task_measured_bytes=per_task_measured, single_model_bytes=single_bytes,
                   task_tensor_growth_exact=all(g == (n - min(args.tasks)) * per_task_tensors
                                                for g, n in zip(growth, args.tasks)),
                   load_avg_end=os.getloadavg()[0], agreement_tasks=n_max, **agree)
    log(f"  {name} done in {time.perf_counter() - t0:.0f} s")
    return rows


def summary(rows: list[dict]) -> pd.DataFrame:
    """One row per (backbone, metric): the value, the issue's target where there is one, and ✓/✗ against it."""
    df = pd.DataFrame(rows)
    out = []

    def add(backbone: str, metric: str, value, key: str = "", check=None) -> None:
        ok = "" if key not in TARGETS else ("✓" if TARGETS[key][1](value if check is None else check) else "✗")
        out.append({"backbone": backbone, "metric": metric, "value": value, "target": TARGETS[key][0] if key else "",
                    "pass": ok})

    for name, g in df.groupby("backbone", sort=False):
        def get(mode: str, n: int, col: str) -> float | None:
            sel = g.loc[(g["mode"] == mode) & (g["tasks"] == n), col]
            return float(sel.iloc[0]) if len(sel) else None

        for n in sorted(g.loc[g["mode"] == "mixed", "tasks"]):
            add(name, f"mixed batch (batched mode, default) / single-task batch throughput, N={n}",
                get("mixed", n, "throughput_vs_single"), "mixed_vs_single")
            if get("mixed-exact", n, "throughput_vs_single") is not None:
                add(name, f"mixed batch, exact mode (reference) / single-task batch throughput, N={n}",
                    get("mixed-exact", n, "throughput_vs_single"))
            add(name, f"loop over N single-task models / single-task batch throughput, N={n}",
                get("loop", n, "throughput_vs_single"))
            if get("lora-mixed", n, "throughput_vs_single") is not None:
                add(name, f"peft LoRA mixed batch / single-task adapter batch throughput, N={n}",
                    get("lora-mixed", n, "throughput_vs_single"))
        if get("lora-single", 1, "throughput_vs_single") is not None:
            add(name, "peft LoRA single-adapter batch / single-task adapter batch throughput",
                get("lora-single", 1, "throughput_vs_single"))
        add(name, "forward_all, 4 tasks at start=L/2 / 4 separate passes (time)", get("forward_all", 4, "time_vs_reference"),
            "forward_all_vs_separate")
        add(name, "same, its block-count limit (shared prefix + 4 suffixes)", get("forward_all", 4, "block_fraction"))
        first = g.iloc[0]
        if "batched_close" in g:
            add(name, f"batched mode vs single-task models: largest logit difference (fp32, N={int(first['agreement_tasks'])})",
                float(first["batched_max_abs_diff"]), "batched_close", bool(first["batched_close"]))
        add(name, "bytes per added task: adapter + head tensors", int(first["task_tensor_bytes"]),
            "task_tensor_growth_exact", bool(first["task_tensor_growth_exact"]))
        add(name, "bytes per added task, measured (resident set / CUDA allocated)", float(first["task_measured_bytes"]))
        add(name, "bytes of one whole single-task model", int(first["single_model_bytes"]))
    return pd.DataFrame(out)


def markdown(frame: pd.DataFrame) -> str:
    names = list(dict.fromkeys(frame["backbone"]))
    lines = ["| metric | target | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for metric in dict.fromkeys(frame["metric"]):
        sel = frame[frame["metric"] == metric].set_index("backbone")
        target = sel["target"].iloc[0]
        cells = [(report._fmt(sel.loc[n, "value"]) + (f" {sel.loc[n, 'pass']}" if sel.loc[n, "pass"] else ""))
                 if n in sel.index else "–" for n in names]
        lines.append(f"| {metric} | {target} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def draw(rows: list[dict], frame: pd.DataFrame, path: Path) -> Path:
    """Throughput vs the single-task batch per N; forward_all vs separate passes; model bytes vs N."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    df = pd.DataFrame(rows)
    sns.set_theme(style="whitegrid", context="notebook")
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.8))
    labels = {"mixed": "MultiTask, batched (default)", "mixed-exact": "MultiTask, exact", "loop": "loop of N models",
              "lora-mixed": "peft LoRA, mixed"}
    speed = df[df["mode"].isin(list(labels))].copy()
    speed["mode"] = speed["mode"].map(labels)
    speed["where"] = speed["backbone"] + "\nN=" + speed["tasks"].astype(str)
    sns.barplot(speed, x="where", y="throughput_vs_single", hue="mode", ax=axes[0])
    axes[0].axhline(0.9, color="red", ls="--", lw=1)
    axes[0].set(xlabel="", ylabel="images/s ÷ single-task batch", title="Mixed batch of N tasks (red: 0.9 target)")
    fa = df[df["mode"] == "forward_all"]
    sns.barplot(fa, x="backbone", y="time_vs_reference", ax=axes[1], color="#d1495b")
    for i, (_, row) in enumerate(fa.iterrows()):
        axes[1].hlines(row["block_fraction"], i - 0.4, i + 0.4, color="black", lw=2)
    axes[1].axhline(0.65, color="red", ls="--", lw=1)
    axes[1].set(xlabel="", ylabel="time ÷ 4 separate passes", title="forward_all, 4 tasks, start=L/2 (black: block limit)")
    mem = df[df["mode"] == "mixed"].melt(id_vars=["backbone", "tasks"], value_vars=["model_bytes", "separate_models_bytes"],
                                         var_name="kind", value_name="bytes")
    mem["MB"] = mem["bytes"] / 2**20
    mem["kind"] = mem["kind"].map({"model_bytes": "MultiTask", "separate_models_bytes": "N single-task models"})
    sns.lineplot(mem, x="tasks", y="MB", hue="backbone", style="kind", markers=True, ax=axes[2])
    axes[2].set(yscale="log", xlabel="tasks N", ylabel="weights (MB)", title="Memory: one backbone for all tasks",
                xticks=sorted(mem["tasks"].unique()))
    axes[2].yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_all(rows: list[dict], machine: dict, out: Path, plot: bool = False) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    report.write_detail(rows, machine, out / "multitask.csv")
    frame = summary(rows)
    cols = ["backbone", "mode", "tasks", "batch", "rank", "img_s", "throughput_vs_single", "time_vs_reference"]
    table = pd.DataFrame(rows)[cols].to_markdown(index=False, floatfmt=".3g")
    md = ["# Many tasks on one frozen backbone", "", report.machine_line(machine), "",
          "## Targets", "", markdown(frame), "", "## Per mode", "", table, ""]
    (out / "multitask.md").write_text("\n".join(md))
    (out / "multitask_targets.md").write_text(markdown(frame) + "\n")  # included verbatim by the README
    paths = [out / "multitask.csv", out / "multitask.md", out / "multitask_targets.md"]
    if plot:
        paths.append(draw(rows, frame, out / "multitask.png"))
    return paths


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--backbones", default="mini-s,vit-s16")
    p.add_argument("--tasks", default="1,4,16", help="numbers of tasks N in a mixed batch")
    p.add_argument("--batch-size", type=int, default=None, help=f"default per backbone: CPU {DEFAULT_BATCH}, CUDA {GPU_BATCH}")
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--steps", type=int, default=3, help="timed rounds after warm-up (more for fast models, --min-seconds)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--min-seconds", type=float, default=20.0)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"], help="auto: bf16 on CUDA, fp32 on CPU")
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--no-lora", action="store_true", help="skip the peft rows")
    p.add_argument("--quick", action="store_true", help="mini-s, N = 1, 2, batch 8, one round: plumbing only")
    p.add_argument("--out", type=Path, default=None, help="default benchmarks/results (required with --quick)")
    args = p.parse_args(argv)
    if args.quick:
        if args.out is None:
            p.error("--quick measures plumbing, not speed: pass --out DIR so benchmarks/results keeps the real numbers")
        args.backbones, args.tasks, args.batch_size, args.steps, args.warmup, args.min_seconds = "mini-s", "1,2", 8, 1, 1, 0.0
    args.out = args.out or ROOT / "benchmarks" / "results"
    args.backbones = [b.strip() for b in args.backbones.split(",") if b.strip()]
    args.tasks = sorted({int(n) for n in args.tasks.split(",")})
    if args.tasks[0] < 1:
        p.error("--tasks must be positive integers")
    return args


def main(argv: list[str] | None = None) -> list[Path]:
    args = parse_args(argv)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    if args.precision == "auto":
        args.precision = "bf16" if device.type == "cuda" else "fp32"
    args.optimizer, args.compile = "none (inference)", False
    torch.set_num_threads(args.threads)
    machine = report.machine_info(device, args)
    log(f"machine: {machine}")
    table = GPU_BATCH if device.type == "cuda" else DEFAULT_BATCH
    t0 = time.perf_counter()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.backbones:
            rows += bench_backbone(name, args.batch_size or table.get(name, 32), args, device, Path(tmp))
            gc.collect()
            write_all(rows, machine, args.out)  # partial results survive an interrupted run
    machine["wall_s"] = round(time.perf_counter() - t0, 1)
    paths = write_all(rows, machine, args.out, plot=True)
    print(markdown(summary(rows)))
    log(f"wrote {', '.join(str(p) for p in paths)} in {machine['wall_s']:.0f} s")
    return paths


if __name__ == "__main__":
    main()
