"""``run(config) -> result``: one training run of the paper's protocol, recorded in the run store.

The store is also a cache: a finished run is returned without training, a run left ``running`` (killed,
interrupted) resumes from its last epoch checkpoint and ends with the same metrics as an uninterrupted
run, and a failed run starts again from scratch. Test accuracy uses the last-epoch weights (as in the
authors' code); the best-validation epoch is reported only.

Seeds: ``seed`` fixes the head/adapter initialisation (and the backbone for ``pretrained=False``), the
validation split, the data order (``make_loader(seed, epoch)``) and the augmentation (one
``torch.Generator`` per epoch and rank derived from ``seed``). Under DDP each rank augments its own
shard, so with augmentation on, N processes match one process in distribution, not bit for bit.
"""
from __future__ import annotations

import functools
import shutil
import time
import traceback
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Subset, TensorDataset

from ..adapter_files import save_adapters
from ..atomic import atomic_save_safetensors
from ..backbones import backbone_info
from ..config import RunConfig, seeded_backbone
from ..data import load_for_run, make_loader
from ..data.device_path import place_on
from ..data.loader import WorkerPool
from ..data.val_replay import Replay
from ..recompute import recompute_frozen_mlps
from ..regimes import count_parameters, prepare, regime
from ..seeds import derive_seed
from ..store import lock, provenance
from ..store import runs as run_store
from . import distributed
from .threads import available_cores
from .checkpoint import CHECKPOINT_FILE, load_checkpoint, read_checkpoint_state, save_checkpoint
from .loop import (CompiledForward, NonFiniteLossError, evaluate, extract_features, lr_at, make_optimizer,
                   deterministic_kernels, set_numerics, show_progress, train_epoch)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def recompute_share_on(cfg: RunConfig, device: torch.device | None) -> float:
    """The run's recompute share on ``device``: by default none on a GPU (recompute trades time for CPU memory, the
    default was measured on CPU; a GPU has the memory), otherwise ``cfg.recompute_share``. Asked for: always."""
    if cfg.recompute_frozen_mlp is None and device is not None and device.type == "cuda":
        return 0.0
    return cfg.recompute_share


def resolve_workers(num_workers: int | None, device: torch.device) -> int:
    """``None`` = this process's share of the cores on a GPU machine (cores / visible GPUs, one kept for the training
    process itself), so N shard processes on N GPUs split the decode work; on a CPU the cores train, so 0."""
    if num_workers is not None:
        return num_workers
    if device.type != "cuda":
        return 0
    return max(1, available_cores() // max(1, torch.cuda.device_count()) - 1)


def build_model_and_data(cfg: RunConfig, device: torch.device | None = None):
    """The prepared model (seeded init) and the dataset splits, resolved with the backbone's own input config."""
    splits = load_for_run(cfg)
    model = seeded_backbone(cfg, splits.num_classes)
    prepare(model, cfg.method, **cfg.adapter_options())
    share = recompute_share_on(cfg, device)
    if share:
        try:
            recompute_frozen_mlps(model, share)
        except ValueError:  # an MLP that is not timm's Mlp: an explicit request fails loudly, the default steps aside
            if cfg.recompute_frozen_mlp is not None:
                raise
    return model, splits


class _Run:
    """State of one run in this process; only rank 0 writes to the run directory."""

    def __init__(self, cfg: RunConfig, ctx: distributed.DistContext, path: Path, progress: bool, verbose: bool) -> None:
        self.cfg, self.ctx, self.path, self.progress, self.verbose = cfg, ctx, path, progress, verbose
        self.record: dict = {"run_id": cfg.run_id, "status": "running", "config": cfg.resolved().to_dict(),
                             "inputs": cfg.input_digests(), "started_at": _now(), "world_size": ctx.world_size, "threads": torch.get_num_threads(),
                             "device": provenance.device_name(ctx.device), **provenance.environment()}
        self.t0 = time.perf_counter()
        self.elapsed_before = 0.0
        self.pool = WorkerPool(pin_memory=ctx.device.type == "cuda")

    def write(self, name: str, obj) -> None:
        if self.ctx.is_main:
            (run_store.write_jsonl if name.endswith(".jsonl") else run_store.write_json)(self.path / name, obj)

    def log(self, text: str) -> None:
        if self.verbose and self.ctx.is_main:
            print(text, flush=True)

    def fail(self, err: BaseException) -> None:
        self.record.update(status="failed", error=f"{type(err).__name__}: {err}", finished_at=_now(),
                           traceback=traceback.format_exc()[-4000:], wall_s=self._wall())
        self.write(run_store.RESULT_FILE, self.record)

    def _wall(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.t0

    def execute(self, stop_after: int | None = None) -> dict:
        cfg, ctx = self.cfg, self.ctx
        provenance.reset_peak_memory(ctx.device)
        self.record["numerics"] = {**set_numerics(cfg.precision), "compile": cfg.compile,
                                   "deterministic_kernels": deterministic_kernels(ctx.device),
                                   "recompute_frozen_mlp": recompute_share_on(cfg, ctx.device)}
        model, splits = build_model_and_data(cfg, ctx.device)
        model.to(ctx.device)
        place_on(splits, ctx.device)  # an in-memory training split is gathered and cropped on the run's device
        counts = count_parameters(model)
        self.record.update(
            params={"trainable": counts.trainable, "total": counts.total, "fraction": counts.fraction},
            backbone=backbone_info(model),
            dataset={"name": splits.name, "num_classes": splits.num_classes, "class_names": list(splits.class_names),
                     "sizes": {k: len(getattr(splits, k)) for k in ("train", "val", "test")}, "info": splits.info})
        self.write(run_store.RESULT_FILE, self.record)
        eval_bs = max(1, (cfg.eval_batch_size or cfg.batch_size) // ctx.world_size)
        workers = resolve_workers(cfg.num_workers, ctx.device)
        self.record["numerics"]["num_workers"] = workers
        # one set of warm workers for every epoch and evaluation of this run (closed in run())
        loader = functools.partial(make_loader, pool=self.pool)
        common = dict(ctx=ctx, batch_size=eval_bs, precision=cfg.precision, make_loader=loader, seed=cfg.seed,
                      num_workers=workers)
        # the validation split is decoded once and replayed every later epoch, bit for bit (data.val_replay)
        replay = Replay(loader, splits.info["data_config"], ctx.device)
        train_set, augment = (splits.train, splits.train_augment) if cfg.augment else (splits.train_eval, None)
        val_set, test_set, train_eval_set, net = splits.val, splits.test, splits.train_eval, model
        if cfg.head_mode == "cached_features":  # linear probe: frozen features once, no augmentation
            self.log(f"[{cfg.run_id}] extracting frozen features for the linear probe")
            feats = {k: TensorDataset(*extract_features(model, getattr(splits, k), **common))
                     for k in ("train_eval", "val", "test")}
            train_set, augment = feats["train_eval"], None
            val_set, test_set, train_eval_set = feats["val"], feats["test"], feats["train_eval"]
            net = model.get_classifier()
        net.train()
        optimizer = make_optimizer(model.named_parameters(), cfg.lr, cfg.weight_decay, cfg.decay_all, ctx.device)
        params = [p for p in model.parameters() if p.requires_grad]
        state = {"epoch": 0, "step": 0, "history": [], "steps": [], "elapsed_s": 0.0, "resumed_from": []}
        ckpt = self.path / CHECKPOINT_FILE
        if read_checkpoint_state(ckpt) is not None:
            state = load_checkpoint(ckpt, model, cfg.method, optimizer)
            state["resumed_from"] = state.get("resumed_from", []) + [state["epoch"]]
            self.elapsed_before = state["elapsed_s"]
            self.log(f"[{cfg.run_id}] resuming after epoch {state['epoch']}/{cfg.epochs} from {ckpt}")
        self.write(run_store.METRICS_FILE, state["history"])  # drops lines written after the checkpoint
        self.write(run_store.STEPS_FILE, state["steps"])
        wrapped = net
        if ctx.active:
            ids = [ctx.device.index] if ctx.device.type == "cuda" else None
            wrapped = nn.parallel.DistributedDataParallel(net, device_ids=ids)
        forward = CompiledForward(wrapped, cfg.compile)
        per_rank = cfg.batch_size // ctx.world_size
        if per_rank * ctx.world_size != cfg.batch_size:
            raise ValueError(f"batch_size={cfg.batch_size} is not divisible by the world size {ctx.world_size}")

        def loader_for(epoch: int):
            return loader(train_set, batch_size=per_rank, shuffle=True, seed=cfg.seed, epoch=epoch,
                          drop_last=False, rank=ctx.rank, world_size=ctx.world_size, num_workers=workers)

        steps_per_epoch = len(loader_for(0))
        total, warmup = cfg.epochs * steps_per_epoch, round(cfg.warmup_epochs * steps_per_epoch)
        for epoch in range(state["epoch"], min(cfg.epochs, stop_after or cfg.epochs)):
            t_epoch = time.perf_counter()
            generator = torch.Generator().manual_seed(derive_seed(cfg.seed, epoch, ctx.rank, "augment"))
            stats, step_rows, state["step"] = train_epoch(
                forward=forward, loader=loader_for(epoch), optimizer=optimizer, params=params, ctx=ctx, epoch=epoch,
                start_step=state["step"], lr_fn=lambda s: lr_at(s, cfg.lr, warmup, total), grad_clip=cfg.grad_clip,
                precision=cfg.precision, augment=augment, generator=generator, log_every=cfg.log_every,
                progress=self.progress and ctx.is_main, desc=f"{cfg.run_id} epoch {epoch + 1}/{cfg.epochs}")
            val = evaluate(net, val_set, **{**common, "make_loader": replay})
            row = {"epoch": epoch + 1, **stats, "val_loss": val["loss"], "val_acc": val["acc"], "val_top5": val["top5"],
                   "seconds": time.perf_counter() - t_epoch}
            state["history"].append(row)
            state["steps"] += step_rows
            state["epoch"], state["elapsed_s"] = epoch + 1, self._wall()
            if ctx.is_main:
                save_checkpoint(ckpt, model, cfg.method, optimizer, state)
                if epoch + 1 in cfg.snapshot_epochs:
                    atomic_save_safetensors(model.state_dict(), run_store.snapshot_path(self.path, epoch + 1))
            self.write(run_store.METRICS_FILE, state["history"])
            self.write(run_store.STEPS_FILE, state["steps"])
            self.log(f"[{cfg.run_id}] epoch {epoch + 1}/{cfg.epochs}  train loss {row['train_loss']:.4f} acc "
                     f"{row['train_acc']:.2%}  val loss {row['val_loss']:.4f} acc {row['val_acc']:.2%}  lr {row['lr']:.2e}  "
                     f"{row['seconds']:.1f}s  {row['images_per_s']:.0f} img/s")
        self.record["numerics"]["val_replay"] = replay.state
        if state["epoch"] < cfg.epochs:  # a prefix of the run (a halving rung): stays "running", resumable
            return {**self.record, "history": state["history"], "epochs_done": state["epoch"]}
        return self._finish(model, net, splits, state, test_set, train_eval_set, common, forward.compiled)

    def _finish(self, model, net, splits, state, test_set, train_eval_set, common, compiled) -> dict:
        cfg, history = self.cfg, state["history"]
        skipped = {"acc": None, "top5": None, "loss": None, "n": 0}  # a validation-only run (cfg.final_eval off)
        test = evaluate(net, test_set, **common) if cfg.final_eval else skipped
        n = min(cfg.train_eval_limit, len(train_eval_set)) if cfg.final_eval else 0
        pick = torch.randperm(len(train_eval_set), generator=torch.Generator().manual_seed(derive_seed(cfg.seed, "train_eval")))[:n]
        train_eval = evaluate(net, Subset(train_eval_set, pick.tolist()), **common) if cfg.final_eval else skipped
        best = max(history, key=lambda r: r["val_acc"]) if history else None
        last = history[-1] if history else {}
        train_imgs = sum(r["train_images"] for r in history)
        train_secs = sum(r["train_seconds"] for r in history)
        if self.ctx.is_main:
            if regime(cfg.method).whole_model:
                atomic_save_safetensors(model.state_dict(), self.path / run_store.MODEL_FILE)
            else:
                save_adapters(model, self.path / run_store.ADAPTER_FILE, class_names=list(splits.class_names),
                              data_config=splits.info["data_config"])
            if cfg.final_eval:
                run_store.write_predictions(self.path / run_store.PREDICTIONS_FILE, test["y_true"], test["y_pred"],
                                            test["top"])
        self.record.update(
            status="finished", finished_at=_now(), wall_s=self._wall(), compiled=compiled,
            peak_mem_mb=provenance.peak_memory_mb(self.ctx.device), resumed_from=state.get("resumed_from", []),
            metrics={"test_acc": test["acc"], "test_top5": test["top5"] if splits.num_classes > 5 else None,
                     "test_loss": test["loss"], "test_n": test["n"], "val_acc": last.get("val_acc"),
                     "val_loss": last.get("val_loss"), "best_val_acc": best["val_acc"] if best else None,
                     "best_val_epoch": best["epoch"] if best else None, "train_acc": last.get("train_acc"),
                     "train_loss": last.get("train_loss"), "train_eval_acc": train_eval["acc"], "train_eval_n": n,
                     "train_images_per_s": train_imgs / train_secs if train_secs > 0 else None,
                     "epochs_done": state["epoch"]})
        self.write(run_store.RESULT_FILE, self.record)
        distributed.barrier(self.ctx)
        m = self.record["metrics"]
        scored = (f"test acc {m['test_acc']:.2%}" + (f" (top-5 {m['test_top5']:.2%})" if m["test_top5"] is not None else "")
                  if cfg.final_eval else "validation only")
        self.log(f"[{cfg.run_id}] finished: {scored}, best val {m['best_val_acc']:.2%} @ epoch {m['best_val_epoch']}, "
                 + (f"train (clean) {m['train_eval_acc']:.2%}, " if cfg.final_eval else "")
                 + f"{self.record['params']['trainable']:,} trainable params, {self.record['wall_s']:.1f}s -> {self.path}")
        return self.record


def cpu_refusal(cfg: RunConfig, device: torch.device) -> str | None:
    """Why ``cfg`` must not train on ``device``, or None: the paper profile on a CPU it did not ask for (torch
    without a usable CUDA, e.g. a driver older than the wheel's CUDA) would silently train for weeks."""
    if cfg.profile != "paper" or device.type != "cpu" or cfg.device == "cpu":
        return None
    return (f"run {cfg.run_id} (profile 'paper') would train on the CPU: torch {torch.__version__} sees no CUDA device "
            f"(built for CUDA {torch.version.cuda}; check `nvidia-smi` and the driver). To train on the CPU on purpose, "
            "pass device='cpu' (--device cpu on the command line)")


def _clear(path: Path) -> None:
    """Empty a run folder for a fresh start, keeping the lock (held by us) and the history of who trained it."""
    for entry in path.iterdir():
        if entry.name in (lock.LOCK_FILE, lock.HISTORY_FILE):
            continue
        shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()


def _locked(ctx: distributed.DistContext, path: Path, stack: ExitStack) -> None:
    """Rank 0 takes the run's lock for the rest of ``stack``; every rank raises :class:`RunLocked` if it could not."""
    held, why = 0.0, ""  # only rank 0's 1 counts: the sum over ranks is 1 exactly when it holds the lock
    if ctx.is_main:
        try:
            stack.enter_context(lock.run_lock(path))
            held = 1.0
        except lock.RunLocked as err:
            why = str(err)
    flag = distributed.all_reduce_sum(ctx, torch.tensor([held], device=ctx.device))
    if float(flag.item()) < 1.0:
        raise lock.RunLocked(why or f"{path.name} is being trained by another process; skipped")


def run(config: RunConfig | dict, *, root: str | Path | None = None, progress: bool | None = None,
        verbose: bool = True, force: bool = False, retry_failed: bool = True, stop_after: int | None = None) -> dict:
    """Train (or resume, or fetch from the store) one run and return its ``result.json`` record.

    ``progress``: tqdm bars (default: only on a terminal). ``force``: discard any stored run and retrain.
    ``retry_failed``: a failed run starts again from scratch (else its record is returned as it is).
    ``stop_after=k``: train only up to epoch k of the full-length run (same schedule) and return the record with its
    ``history``, status still ``running``; a later call resumes it (successive halving's rungs).
    Raises :class:`~adaptertune.store.lock.RunLocked` without touching the run when another process is training it,
    and on failure after recording ``status: "failed"`` with the error (e.g. :class:`NonFiniteLossError`).
    The paper profile refuses a CPU it did not ask for (:func:`cpu_refusal`).
    """
    return train_or_fetch(config, root=root, progress=progress, verbose=verbose, force=force,
                          retry_failed=retry_failed, stop_after=stop_after)[0]


def train_or_fetch(config: RunConfig | dict, *, root: str | Path | None = None, progress: bool | None = None,
                   verbose: bool = True, force: bool = False, retry_failed: bool = True,
                   stop_after: int | None = None) -> tuple[dict, bool]:
    """:func:`run`, also saying whether this call trained (False: the record was in the store, e.g. another shard
    finished the run between a sweep's first look and taking the lock)."""
    cfg = config if isinstance(config, RunConfig) else RunConfig.from_dict(config)
    if stop_after is not None and (isinstance(stop_after, bool) or not isinstance(stop_after, int) or stop_after < 1):
        raise ValueError(f"stop_after={stop_after!r} is not allowed: use an epoch >= 1 (or None for the whole run)")
    ctx = distributed.setup(cfg.device)
    path = run_store.run_path(cfg.run_id, root)
    existing = run_store.read_result(cfg.run_id, root)
    done = existing is not None and existing.get("status") == "finished" and not force
    if distributed.agreed(ctx, done):  # rank 0's reading, on every rank: ranks that decide apart deadlock
        return existing if done else run_store.read_result(cfg.run_id, root), False
    refusal = cpu_refusal(cfg, ctx.device)
    if refusal:
        raise ValueError(refusal)
    with ExitStack() as stack:
        _locked(ctx, path, stack)
        existing = run_store.read_result(cfg.run_id, root)  # under the lock: another process may just have finished it
        status = None if existing is None else existing.get("status")
        if distributed.agreed(ctx, not force and (status == "finished" or (status == "failed" and not retry_failed))):
            return existing, False
        distributed.barrier(ctx)  # every rank has read the old status before rank 0 changes anything
        if ctx.is_main:
            if force or status == "failed":
                _clear(path)
            run_store.write_json(path / run_store.CONFIG_FILE, cfg.resolved().to_dict())
            lock.note(path, "start")
        distributed.barrier(ctx)
        job = _Run(cfg, ctx, path, show_progress(progress), verbose)
        try:
            record = job.execute(stop_after)
        except (KeyboardInterrupt, SystemExit):
            raise  # stays "running": the next run() resumes from the last checkpoint
        except Exception as err:
            job.fail(err)
            raise
        finally:
            job.pool.close()
        if ctx.is_main and record.get("status") == "finished":
            # resume needs the optimizer state, a finished run does not (load_model reads the adapter / model file)
            (path / CHECKPOINT_FILE).unlink(missing_ok=True)
            lock.note(path, "finish")
        return record, True


__all__ = ["NonFiniteLossError", "build_model_and_data", "cpu_refusal", "recompute_share_on", "resolve_workers", "run", "train_or_fetch"]
