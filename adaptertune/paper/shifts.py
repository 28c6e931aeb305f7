"""What a stored run changes in each block, measured on real block outputs: the input of notebook 02's theory.

For a full fine-tuning run the change is the *task shift* ``Δ(h)`` = fine-tuned − pretrained block output; for
an adapter run it is the adapter's residual ``s·A(h)`` on the same block outputs, plus the adapter's
linearisation at 0, ``s · W_up · diag(GELU'(b_down)) · W_down``. Both are read with the same inputs (the
pretrained stream) so they can be compared block by block; :mod:`adaptertune.paper.theory` does the maths.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..backbones import create_backbone
from ..data import load_for_run
from ..inject import adapter_modules, transformer_blocks
from ..regimes import regime
from ..store import models
from ..store import runs as run_store
from .theory import ENERGIES, KIND_ADAPTER, KIND_FULL, KIND_LINEARISED, estimate_shift, linear_map, spectra_table, tail_curves


@torch.no_grad()
def block_shifts(pretrained: nn.Module, finetuned: nn.Module, images: Tensor, batch_size: int = 256,
                 max_tokens: int | None = 20000, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per block l: ``(H, D)`` with H the pretrained block output and D = fine-tuned − pretrained block output.

    Both blocks get the *same* input (the pretrained model's input to block l), so D is the shift of that
    block alone; the theory treats blocks independently, and feeding the fine-tuned stream instead would mix
    in the shifts of every block below. For an adapted model, whose frozen block equals the pretrained one,
    D is exactly the adapter's residual ``s·A(h)``. Rows are tokens ([CLS] included, as the adapter sees
    them); ``max_tokens`` subsamples rows (seeded) to bound memory.
    """
    pre_blocks, ft_blocks = transformer_blocks(pretrained), transformer_blocks(finetuned)
    if len(pre_blocks) != len(ft_blocks):
        raise ValueError(f"the models have {len(pre_blocks)} and {len(ft_blocks)} blocks; they must be the same architecture")
    inputs: dict[int, Tensor] = {}
    hooks = [b.register_forward_pre_hook(lambda m, args, i=i: inputs.__setitem__(i, args[0]))
             for i, b in enumerate(pre_blocks)]
    pretrained.eval(), finetuned.eval()
    hs: list[list[Tensor]] = [[] for _ in pre_blocks]
    ds: list[list[Tensor]] = [[] for _ in pre_blocks]
    try:
        for start in range(0, len(images), batch_size):
            inputs.clear()
            pretrained.forward_features(images[start:start + batch_size])
            for i, (pb, fb) in enumerate(zip(pre_blocks, ft_blocks)):
                x = inputs[i]
                h = pb(x)
                hs[i].append(h.reshape(-1, h.shape[-1]))
                ds[i].append((fb(x) - h).reshape(-1, h.shape[-1]))
    finally:
        for hook in hooks:
            hook.remove()
    out = []
    rng = np.random.default_rng(seed)
    for h_parts, d_parts in zip(hs, ds):
        h, d = torch.cat(h_parts).double().numpy(), torch.cat(d_parts).double().numpy()
        if max_tokens is not None and len(h) > max_tokens:
            keep = np.sort(rng.choice(len(h), size=max_tokens, replace=False))
            h, d = h[keep], d[keep]
        out.append((h, d))
    return out


def adapter_linearisation(adapter: nn.Module) -> np.ndarray:
    """``s · W_up · diag(act'(b_down)) · W_down`` (d×d, rank ≤ r): the adapter's linear map at h = 0.

    ``adapter`` is an :class:`adaptertune.adapter.Adapter` (``down``, ``act``, ``up``, ``scale``); the slope of
    its activation at ``b_down`` comes from autograd, so it is right for whichever activation it uses.
    """
    b = adapter.down.bias.detach().double().clone().requires_grad_(True)
    adapter.act(b).sum().backward()  # the activation has no weights: float64 in, float64 slope out
    slope = b.grad.detach()
    W_down, W_up = adapter.down.weight.detach().double(), adapter.up.weight.detach().double()
    return (float(adapter.scale) * W_up @ (slope[:, None] * W_down)).numpy()


def _models(run_id: str, root: str | Path | None) -> tuple[nn.Module, nn.Module]:
    """The run's trained network and its pretrained backbone (same architecture and head size)."""
    cfg = run_store.load_config(run_id, root)
    if not (regime(cfg.method).whole_model or regime(cfg.method).adapter_options):
        raise ValueError(f"run {run_id} is method={cfg.method!r}: a block shift is measured on a run that trains the "
                         "whole backbone (full) or adapters")
    trained = models.load_model(run_id, root)
    num_classes = trained.get_classifier().out_features
    pretrained = create_backbone(cfg.backbone, num_classes, pretrained=cfg.pretrained, checkpoint=cfg.checkpoint,
                                 profile=cfg.profile)
    return pretrained, trained


run_models = _models  # public name for the rank advisor: the trained network and its pretrained backbone


def probe_images(run_id: str, images: int, root: str | Path | None = None) -> Tensor:
    """The first ``images`` of a fixed (seed 0) permutation of the run's test split: the same for every run of a dataset."""
    splits = load_for_run(run_store.load_config(run_id, root))
    pick = torch.randperm(len(splits.test), generator=torch.Generator().manual_seed(0))[:images].tolist()
    return torch.stack([splits.test[i][0] for i in pick])


def _frames(fits, blocks: list[int], ranks, top, energies, **columns) -> dict[str, pd.DataFrame]:
    spectrum, summary = spectra_table(fits, ranks, top=top, energies=energies, blocks=blocks)
    tails = tail_curves(fits, ranks, blocks=blocks)
    return {k: f.assign(**columns) for k, f in (("spectrum", spectrum), ("summary", summary), ("tails", tails))}


def analyse_runs(run_rows: pd.DataFrame, ranks: Sequence[int], images: int = 512, top: int | None = None,
                 energies: Sequence[float] = ENERGIES, root: str | Path | None = None) -> dict[str, pd.DataFrame]:
    """Spectra, per-block summaries and tails of every full-FT and adapter run in ``run_rows`` (results rows).

    Returns ``{"spectrum", "summary", "tails"}`` (see :func:`theory.spectra_table` / :func:`theory.tail_curves`),
    each row tagged with ``kind`` (:data:`theory.KINDS`), ``run_id``, ``dataset``, ``seed`` and ``adapter_rank``. A full-FT run
    gives its task shift; an adapter run gives the least-squares map of its residual on real block outputs and
    its linearisation at 0 (adapted blocks only).
    """
    parts: dict[str, list[pd.DataFrame]] = {"spectrum": [], "summary": [], "tails": []}
    for row in tqdm(list(run_rows.itertuples(index=False)), desc="block shifts", disable=len(run_rows) < 2):
        pretrained, trained = _models(row.run_id, root)
        pairs = block_shifts(pretrained, trained, probe_images(row.run_id, images, root))
        tag = {"run_id": row.run_id, "dataset": row.dataset, "seed": int(row.seed),
               "adapter_rank": float(row.rank) if regime(row.method).adapter_options else np.nan}
        if regime(row.method).whole_model:
            blocks = list(range(len(pairs)))
            found = [_frames([estimate_shift(H, D) for H, D in pairs], blocks, ranks, top, energies, kind=KIND_FULL, **tag)]
        else:
            adapters = adapter_modules(trained)
            blocks = sorted(adapters)
            fits = [estimate_shift(*pairs[b]) for b in blocks]
            linear = [linear_map(adapter_linearisation(adapters[b]), pairs[b][0]) for b in blocks]
            found = [_frames(fits, blocks, ranks, top, energies, kind=KIND_ADAPTER, **tag),
                     _frames(linear, blocks, ranks, top, energies, kind=KIND_LINEARISED, **tag)]
        for frames in found:
            for key, frame in frames.items():
                parts[key].append(frame)
    empty = _frames([], [], ranks, top, energies, kind=[], run_id=[], dataset=[], seed=[], adapter_rank=[])
    return {k: pd.concat(v, ignore_index=True) if v else empty[k] for k, v in parts.items()}


__all__ = ["adapter_linearisation", "analyse_runs", "block_shifts", "probe_images", "run_models"]
