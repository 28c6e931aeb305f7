"""The pieces of one training run that do not touch the run store: schedule, optimizer, one epoch, evaluation.

Data-parallel equivalence: each step's loss is the *sum* over the local batch divided by the global batch
size (times the world size, which DDP's gradient averaging divides out again), so N processes compute
the gradient of the same global-batch mean as one process would, even when the last batch is uneven.
"""
from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset, Subset
from tqdm.auto import tqdm

from ..seeds import derive_seed
from .distributed import DistContext, all_reduce_sum, gather_rows


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the run stops instead of training on garbage."""


def lr_at(step: int, base_lr: float, warmup_steps: int, total_steps: int) -> float:
    """Learning rate for update ``step`` (0-based): linear warm-up to ``base_lr``, then cosine to 0, per step."""
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(params: Iterable[tuple[str, nn.Parameter]], lr: float, weight_decay: float, decay_all: bool,
                   device: torch.device) -> torch.optim.AdamW:
    """AdamW; the paper's code decays every trainable tensor (``decay_all``), else 1-D tensors get none.

    Fused kernels on CUDA, the multi-tensor (foreach) path elsewhere.
    """
    named = [(n, p) for n, p in params if p.requires_grad]
    if not named:
        raise ValueError("nothing to train: no parameter requires grad")
    if decay_all:
        groups = [{"params": [p for _, p in named], "weight_decay": weight_decay}]
    else:
        groups = [{"params": [p for _, p in named if p.ndim > 1], "weight_decay": weight_decay},
                  {"params": [p for _, p in named if p.ndim <= 1], "weight_decay": 0.0}]
        groups = [g for g in groups if g["params"]]
    kwargs = {"fused": True} if device.type == "cuda" else {"foreach": True}
    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay, **kwargs)


def autocast(device: torch.device, precision: str):
    return torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()


def set_numerics(precision: str) -> dict:
    """Switch TF32 on or off for this process as ``precision`` says (config.PRECISIONS) and return what was set, for
    the run's record. Explicit both ways: cuDNN allows TF32 by default, which would make 'fp32' quietly TF32."""
    tf32 = precision in ("tf32", "bf16")
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    return {"precision": precision, "autocast": "bf16" if precision == "bf16" else None, "tf32": tf32}


def deterministic_kernels(device: torch.device) -> bool:
    """On CUDA, pick deterministic kernels (cuDNN's, cuBLAS's fixed workspace, PyTorch's deterministic mode with a
    warning where an op has none), so that the same run twice, or resumed, gives the same tensors: measured on an
    H200, a full fine-tuning run otherwise differed by ~1e-4 between two identical runs (cuDNN's convolution weight
    gradient of the patch embedding is the usual source). CPU kernels already are: nothing to set, returns False."""
    if device.type != "cuda":
        return False
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts its first handle
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    torch.use_deterministic_algorithms(True, warn_only=True)
    return True


def show_progress(flag: bool | None) -> bool:
    """Bars only when asked, or by default when stderr is a terminal (never in papermill/CI logs)."""
    return bool(flag) if flag is not None else sys.stderr.isatty()


def guard_module_hooks() -> None:
    """Make dynamo guard on module hooks, so a compiled graph never outlives a change of adapters.

    By default dynamo skips guards on nn.Module hooks and, with inlined modules, two instances of one class
    share compiled code: an adapter model (its adapters run in forward hooks) compiled after a head-only model
    of the same backbone silently reuses the hook-less graph, i.e. trains without adapters. Guarding on hooks
    makes dynamo recompile instead (one cache entry per model, hence the higher recompile limit).
    """
    torch._dynamo.config.skip_nnmodule_hook_guards = False
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)


class CompiledForward:
    """``torch.compile`` with a loud message and an eager fallback if compilation fails: at set-up, or at the first
    call of each input shape (a new shape, e.g. an epoch's shorter last batch, compiles anew). torch compiles the
    backward graph lazily, at the first backward, where a failure would stop the run mid-step; so that first call
    first runs a throwaway forward and backward to the trainable parameters (random state restored after it) and
    falls back if they fail. Not under DDP, whose reducer expects every forward's backward to reach its hooks."""

    def __init__(self, module: nn.Module, enabled: bool, backend: str = "inductor",
                 fallback: str = "training continues in eager mode (set compile=False to silence this)") -> None:
        self.eager, self.fn, self.compiled, self._fallback_note = module, module, None, fallback
        self._checked: set[tuple[int, ...]] | None = None if not enabled else set()  # input shapes compiled and checked
        if enabled:
            try:
                guard_module_hooks()
                self.fn, self.compiled = torch.compile(module, backend=backend), True
            except Exception as err:  # noqa: BLE001 - any compiler error means: run eagerly, loudly
                self._fallback(err)

    def _fallback(self, err: Exception) -> None:
        print(f"warning: torch.compile failed ({type(err).__name__}: {str(err)[:300]}); {self._fallback_note}",
              file=sys.stderr)
        self.fn, self.compiled, self._checked = self.eager, False, None

    def __call__(self, x: Tensor) -> Tensor:
        if self._checked is None or tuple(x.shape) in self._checked:
            return self.fn(x)
        try:
            self._compile_backward(x)
            out = self.fn(x)
            self._checked.add(tuple(x.shape))
            return out
        except Exception as err:  # noqa: BLE001
            self._fallback(err)
            return self.eager(x)

    def _compile_backward(self, x: Tensor) -> None:
        trainable = [p for p in self.eager.parameters() if p.requires_grad]
        if not trainable or not torch.is_grad_enabled() or isinstance(self.eager, nn.parallel.DistributedDataParallel):
            return
        with torch.random.fork_rng(devices=[x.device.index] if x.device.type == "cuda" else []):  # a CUDA tensor's index is set
            torch.autograd.grad(self.fn(x).float().sum(), trainable, allow_unused=True)


def train_epoch(*, forward: Callable[[Tensor], Tensor], loader: Iterable, optimizer: torch.optim.Optimizer,
                params: list[nn.Parameter], ctx: DistContext, epoch: int, start_step: int, lr_fn: Callable[[int], float],
                grad_clip: float | None, precision: str, augment: Callable | None, generator: torch.Generator | None,
                log_every: int, progress: bool, desc: str) -> tuple[dict, list[dict], int]:
    """One pass over ``loader``; returns (epoch stats, step-log rows, next global step)."""
    device, step = ctx.device, start_step
    totals = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, correct, count
    step_rows: list[dict] = []
    lr = lr_fn(step)
    finite = torch.ones((), dtype=torch.bool, device=device)
    mean_loss = float("nan")
    sync_every_step = device.type == "cpu"  # costs nothing there; on a GPU: every log_every steps and at the end
    t0 = time.perf_counter()
    bar = tqdm(total=len(loader), desc=desc, leave=False, disable=not progress, dynamic_ncols=True)
    for x, y in loader:
        if augment is not None:
            x = augment(x, generator)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        lr = lr_fn(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        with autocast(device, precision):
            logits = forward(x)
        loss_sum = F.cross_entropy(logits.float(), y, reduction="sum")
        batch = all_reduce_sum(ctx, torch.stack([loss_sum.detach().double(), torch.tensor(float(y.shape[0]), dtype=torch.float64, device=device)]))
        mean = batch[0] / batch[1]
        finite &= torch.isfinite(mean)  # on the device: no host sync per step on a GPU
        logged = bool(log_every) and step % log_every == 0
        shared = sync_every_step or logged  # the same steps on every rank: only there may a rank stop the run
        if shared or (progress and (step + 1) % 10 == 0):  # progress is rank 0's alone: a bar refresh never raises
            mean_loss = mean.item()
            if shared and not bool(finite):
                bar.close()
                raise NonFiniteLossError(f"training loss became {mean_loss if not math.isfinite(mean_loss) else 'nan'} "
                                         f"at epoch {epoch + 1}, {'step' if sync_every_step else 'by step'} {step + 1} "
                                         f"(lr={lr:.3g}); the run was stopped. Lower the lr, raise warmup_epochs, or use "
                                         "fp32.")
        loss = loss_sum / batch[1].to(loss_sum.dtype) * ctx.world_size
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        optimizer.step()
        totals += torch.stack([loss_sum.detach().double(), (logits.argmax(1) == y).sum().double(),
                               torch.tensor(float(y.shape[0]), dtype=torch.float64, device=device)])
        if log_every and step % log_every == 0:
            step_rows.append({"step": step, "epoch": epoch + 1, "loss": mean_loss, "lr": lr})
        step += 1
        bar.update(1)
        if step % 10 == 0:
            bar.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{lr:.2e}")
    bar.close()
    if not bool(finite):
        raise NonFiniteLossError(f"training loss became nan or inf during epoch {epoch + 1} (lr={lr:.3g}); the run was "
                                 "stopped. Lower the lr, raise warmup_epochs, or use fp32.")
    all_reduce_sum(ctx, totals)
    seconds = time.perf_counter() - t0
    loss_total, correct, count = totals.tolist()
    if count == 0:
        raise ValueError("the training loader yielded no batches: the training split is empty or smaller than one batch")
    stats = {"train_loss": loss_total / count, "train_acc": correct / count, "lr": lr, "train_seconds": seconds,
             "train_images": int(count), "images_per_s": count / seconds if seconds > 0 else float("nan")}
    return stats, step_rows, step


def _rank_shard(dataset: Dataset, ctx: DistContext, batch_size: int, make_loader: Callable, seed: int,
                num_workers: int) -> tuple[Iterable, Tensor, DistContext]:
    """This rank's strided shard of ``dataset`` in order, the dataset index of each of its rows, and the context to
    gather the rows in. A split with fewer rows than ranks is scored whole on every rank (no gather): a rank with no
    rows would fail alone while the others wait for it. An empty split fails on every rank alike."""
    if len(dataset) == 0:
        raise ValueError("cannot evaluate on an empty split")
    if len(dataset) < ctx.world_size:
        ctx = DistContext(0, 1, 0, ctx.device)
    shard = Subset(dataset, list(range(ctx.rank, len(dataset), ctx.world_size)))
    loader = make_loader(shard, batch_size=batch_size, shuffle=False, seed=seed, epoch=0, drop_last=False,
                         num_workers=num_workers)
    return loader, torch.arange(ctx.rank, len(dataset), ctx.world_size, dtype=torch.int64, device=ctx.device), ctx


@torch.no_grad()
def evaluate(module: nn.Module, dataset: Dataset, *, ctx: DistContext, batch_size: int, precision: str,
             make_loader: Callable, seed: int, num_workers: int = 0, topk: int = 5) -> dict:
    """Loss, top-1 (and top-k) accuracy and per-example predictions; each rank scores a strided shard."""
    device, was_training = ctx.device, module.training
    module.eval()
    loader, index, ctx = _rank_shard(dataset, ctx, batch_size, make_loader, seed, num_workers)
    losses, labels, tops = [], [], []
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with autocast(device, precision):
            logits = module(x).float()
        losses.append(F.cross_entropy(logits, y, reduction="none").double())
        labels.append(y.long())
        tops.append(logits.topk(min(topk, logits.shape[1]), dim=1).indices)
    module.train(was_training)
    rows = torch.cat([index.unsqueeze(1), torch.cat(labels).unsqueeze(1), torch.cat(tops)], dim=1)
    rows, loss = gather_rows(ctx, rows), gather_rows(ctx, torch.cat(losses))
    order = rows[:, 0].argsort()
    rows, loss = rows[order].cpu(), loss[order].cpu()
    y_true, top = rows[:, 1], rows[:, 2:]
    out = {"loss": loss.mean().item(), "acc": (top[:, 0] == y_true).double().mean().item(), "n": int(y_true.shape[0]),
           "y_true": y_true.numpy(), "y_pred": top[:, 0].numpy(), "top": top.numpy()}
    out["top5"] = (top == y_true.unsqueeze(1)).any(1).double().mean().item() if top.shape[1] >= 5 else None
    return out


@torch.no_grad()
def extract_features(model: nn.Module, dataset: Dataset, *, ctx: DistContext, batch_size: int, precision: str,
                     make_loader: Callable, seed: int, num_workers: int = 0) -> tuple[Tensor, Tensor]:
    """Pre-logit [CLS] features of the frozen backbone (eval mode, no augmentation) for the linear probe."""
    model.eval()
    loader, index, ctx = _rank_shard(dataset, ctx, batch_size, make_loader, seed, num_workers)
    feats, labels = [], []
    for x, y in loader:
        with autocast(ctx.device, precision):
            f = model.forward_head(model.forward_features(x.to(ctx.device)), pre_logits=True)
        feats.append(f.float())
        labels.append(y.to(ctx.device).long())
    feats_all, labels_all = gather_rows(ctx, torch.cat(feats)), gather_rows(ctx, torch.stack([index, torch.cat(labels)], 1))
    order = labels_all[:, 0].argsort()
    return feats_all[order].cpu(), labels_all[order, 1].cpu()


__all__ = ["CompiledForward", "NonFiniteLossError", "autocast", "deterministic_kernels", "set_numerics", "derive_seed", "evaluate", "extract_features",
           "guard_module_hooks",
           "lr_at", "make_optimizer", "show_progress", "train_epoch"]
