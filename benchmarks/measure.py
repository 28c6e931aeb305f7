"""The instruments: one training step shared by every regime, round-robin timing, FLOPs, optimizer-state
bytes, an autograd audit, and the cached-features head epoch.

Timing is round-robin (one step of each regime in turn, the order rotated every round) so that background
load on a shared machine slows all regimes alike instead of whichever happens to run while it peaks.
"""
from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

from adaptertune.inject import transformer_blocks
from adaptertune.training.loop import CompiledForward, autocast

aten = torch.ops.aten


# ----------------------------------------------------------------------------------------------------- the step
def make_optimizer(model: nn.Module, kind: str) -> torch.optim.AdamW:
    """AdamW as in the paper's recipe (lr 1e-3, wd 0.05 on every trainable tensor); ``kind`` picks the kernel."""
    params = [p for p in model.parameters() if p.requires_grad]
    flags = {"foreach": {"foreach": True}, "fused": {"fused": True}, "loop": {"foreach": False}}[kind]
    return torch.optim.AdamW(params, lr=1e-3, weight_decay=0.05, **flags)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_step(model: Callable[[Tensor], Tensor], optimizer: torch.optim.Optimizer, x: Tensor, y: Tensor,
               precision: str, device: torch.device, clip: float | None = None) -> None:
    """Forward + cross-entropy + backward + AdamW step: the identical step for every regime."""
    with autocast(device, precision):
        logits = model(x)
    loss = F.cross_entropy(logits.float(), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip is not None:
        torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], clip)
    optimizer.step()


def infer_step(model: Callable[[Tensor], Tensor], x: Tensor, precision: str, device: torch.device) -> None:
    with torch.inference_mode(), autocast(device, precision):
        model(x)


def time_round_robin(fns: dict[str, Callable[[], None]], warmup: int, repeats: int, device: torch.device,
                     log: Callable[[str], None] = print, min_seconds: float = 0.0,
                     max_repeats: int = 200) -> dict[str, list[float]]:
    """Seconds per call of each ``fns`` entry: ``warmup`` untimed rounds, then at least ``repeats`` timed rounds.

    Fast models get more rounds: after the first timed round the count grows until the timed rounds take about
    ``min_seconds`` (at most ``max_repeats``), so a 40 ms step is not judged on three samples.
    """
    names = list(fns)
    times: dict[str, list[float]] = {n: [] for n in names}
    total, rnd = warmup + repeats, 0
    while rnd < total:
        order = names[rnd % len(names):] + names[:rnd % len(names)]
        t_round = time.perf_counter()
        for n in order:
            sync(device)
            t0 = time.perf_counter()
            fns[n]()
            sync(device)
            if rnd >= warmup:
                times[n].append(time.perf_counter() - t0)
        if rnd == warmup and min_seconds > 0:
            per_round = time.perf_counter() - t_round
            total = warmup + max(repeats, min(max_repeats, math.ceil(min_seconds / max(per_round, 1e-6))))
        rnd += 1
        if total <= 20 or rnd % 10 == 0 or rnd == total:
            log(f"    round {rnd}/{total}{' (warm-up)' if rnd <= warmup else ''} done")
    return times


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def paired_ratio(numerator: list[float], denominator: list[float]) -> float:
    """Median over rounds of ``numerator[i] / denominator[i]``: both were timed within the same round."""
    return median([a / b for a, b in zip(numerator, denominator)])


@dataclass(frozen=True)
class RatioStats:
    """A ratio measured once per round (one interleaved repeat): its median and spread over the rounds."""

    median: float
    q25: float
    q75: float
    lo: float
    hi: float
    n: int

    def map(self, fn: Callable[[float], float]) -> RatioStats:
        """The same statistics of ``fn(ratio)`` for a monotone ``fn`` (e.g. ÷ a FLOP ratio, or a cost 1 − ratio)."""
        lo, hi = sorted((fn(self.lo), fn(self.hi)))
        q25, q75 = sorted((fn(self.q25), fn(self.q75)))
        return RatioStats(fn(self.median), q25, q75, lo, hi, self.n)

    def to_dict(self, prefix: str) -> dict[str, float]:
        return {prefix: self.median, f"{prefix}_q25": self.q25, f"{prefix}_q75": self.q75, f"{prefix}_min": self.lo,
                f"{prefix}_max": self.hi, f"{prefix}_n": self.n}


def ratio_stats(numerator: list[float], denominator: list[float]) -> RatioStats:
    """Per-round ``numerator[i] / denominator[i]`` (seconds of two regimes timed in the same round), summarised.

    For step times ``ratio_stats(t_full, t_adapter)`` is the adapter's throughput relative to full FT.
    """
    if len(numerator) != len(denominator) or not numerator:
        raise ValueError(f"need the same non-zero number of rounds for both regimes, got {len(numerator)} and "
                         f"{len(denominator)}")
    values = [a / b for a, b in zip(numerator, denominator)]
    q = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else [values[0]] * 3
    return RatioStats(statistics.median(values), q[0], q[2], min(values), max(values), len(values))


def Compiled(module: torch.nn.Module, backend: str = "inductor") -> CompiledForward:  # noqa: N802 - used like a class
    """The training loop's compiled forward (hook guards, loud eager fallback), for timing."""
    return CompiledForward(module, True, backend=backend, fallback="timing eager mode instead")


# ------------------------------------------------------------------------------------------ parameters & state
@dataclass(frozen=True)
class StateBytes:
    moments: int  # exp_avg + exp_avg_sq (+ max_exp_avg_sq): scales with the trainable parameters
    counters: int  # the per-tensor `step` scalars

    @property
    def total(self) -> int:
        return self.moments + self.counters


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> StateBytes:
    """Bytes held in the optimizer state after at least one step (AdamW fp32: 8 bytes per trainable parameter)."""
    moments = counters = 0
    for state in optimizer.state.values():
        for key, value in state.items():
            if isinstance(value, Tensor):
                size = value.numel() * value.element_size()
                if key == "step":
                    counters += size
                else:
                    moments += size
    return StateBytes(moments, counters)


def trainable_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def parameter_bytes(model: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


# ------------------------------------------------------------------------------------------------------- FLOPs
def _cpu_flash_forward(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_flash_backward(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return flop_counter.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


# torch's counter knows the CUDA attention kernels but not the CPU flash kernel that SDPA dispatches to here.
CPU_ATTENTION_FLOPS = {
    aten._scaled_dot_product_flash_attention_for_cpu: _cpu_flash_forward,
    aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_flash_backward,
}


def step_flops(model: nn.Module, x: Tensor, y: Tensor, backward: bool = True) -> int:
    """Matmul/conv/attention FLOPs of forward (+ backward) for the batch ``x``; the optimizer is not counted."""
    with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS) as counter:
        if backward:
            F.cross_entropy(model(x).float(), y).backward()
        else:
            with torch.no_grad():
                model(x)
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


# ------------------------------------------------------------------------------------------------ autograd audit
@dataclass(frozen=True)
class AutogradAudit:
    """What autograd records for one forward: where differentiation starts and what it keeps for backward."""

    first_differentiated_block: int | None  # first block whose *input* requires grad (its internals are differentiated)
    first_grad_output_block: int | None  # first block whose output requires grad (e.g. the first adapted block)
    graph_nodes: int  # autograd nodes reachable from the loss
    saved_bytes: int  # activation bytes saved for backward (parameters excluded, shared storages once)


def autograd_audit(model: nn.Module, x: Tensor, y: Tensor) -> AutogradAudit:
    blocks = transformer_blocks(model)
    inputs: list[bool] = [False] * len(blocks)
    outputs: list[bool] = [False] * len(blocks)
    handles = []
    for i, block in enumerate(blocks):
        handles.append(block.register_forward_pre_hook(lambda m, a, i=i: inputs.__setitem__(i, a[0].requires_grad)))
        handles.append(block.register_forward_hook(lambda m, a, o, i=i: outputs.__setitem__(i, o.requires_grad)))
    storages: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        s = t.untyped_storage()
        storages[s.data_ptr()] = max(storages.get(s.data_ptr(), 0), s.nbytes())
        return t

    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = F.cross_entropy(model(x).float(), y)
    finally:
        for h in handles:
            h.remove()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved = sum(n for ptr, n in storages.items() if ptr not in params)
    nodes, stack = set(), [loss.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in nodes:
            continue
        nodes.add(node)
        stack.extend(next_fn for next_fn, _ in node.next_functions)
    first_in = next((i for i, f in enumerate(inputs) if f), None)
    first_out = next((i for i, f in enumerate(outputs) if f), None)
    return AutogradAudit(first_in, first_out, len(nodes), saved)


# -------------------------------------------------------------------------------------------- cached features
@dataclass(frozen=True)
class CachedHeadTiming:
    extract_s: float  # one-time: backbone features of one batch (inference)
    cached_step_s: float  # one linear-head AdamW step on cached features


def cached_head_timing(model: nn.Module, x: Tensor, y: Tensor, optimizer_kind: str, precision: str,
                       device: torch.device, repeats: int = 50) -> CachedHeadTiming:
    """Head-only from cached features: features once (inference), then the same head step on (batch, d) tensors."""
    model.eval()
    sync(device)
    t0 = time.perf_counter()
    with torch.inference_mode(), autocast(device, precision):
        feats = model.forward_head(model.forward_features(x), pre_logits=True).float()
    sync(device)
    extract = time.perf_counter() - t0
    feats = feats.clone()  # a normal tensor, usable by autograd
    head = nn.Linear(feats.shape[1], model.num_classes).to(device)
    opt = make_optimizer(head, optimizer_kind)
    times = time_round_robin({"cached": lambda: train_step(head, opt, feats, y, precision, device)},
                             warmup=3, repeats=repeats, device=device, log=lambda s: None)
    return CachedHeadTiming(extract, median(times["cached"]))
