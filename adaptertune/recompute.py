"""Trade a little time for memory in the frozen part of an adapted ViT (beyond the paper; adapter runs recompute
the lower half by default, ``config.RECOMPUTE_DEFAULT``).

A frozen MLP above the first adapter still needs its *input* gradient, so autograd keeps the 4d-wide input of
GELU for backward. Recomputing ``fc1 + act`` in backward from the d-wide block input (activation checkpointing
of that piece only) drops those tensors. The arithmetic is the same, so outputs and gradients are unchanged;
the benchmark (``benchmarks/``) measures what it saves and costs.

Each recomputed MLP costs one extra ``fc1`` in backward and saves one 4d-wide tensor per token, so ``fraction``
trades the two linearly: recomputing a share of the MLPs buys a share of the memory for a share of the time.
The lowest MLPs go first: their backward runs last, when most saved tensors are already freed, so the hidden
layer they rebuild there does not raise the peak.
"""
from __future__ import annotations

import math

from timm.layers import Mlp
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from .inject import adapter_config, transformer_blocks


def _fc1_act(mlp: Mlp, x: Tensor) -> Tensor:
    return mlp.act(mlp.fc1(x))


def _recomputing_forward(mlp: Mlp):
    def forward(x: Tensor) -> Tensor:
        hidden = checkpoint(_fc1_act, mlp, x, use_reentrant=False) if x.requires_grad else _fc1_act(mlp, x)
        return mlp.drop2(mlp.fc2(mlp.norm(mlp.drop1(hidden))))
    return forward


def recompute_frozen_mlps(model: nn.Module, fraction: float = 1.0) -> list[int]:
    """Make the lowest ``fraction`` of the differentiated frozen timm MLPs recompute their hidden layer in backward.

    Differentiated: the blocks above the first adapted one (nothing at or below it keeps tensors for backward).
    ``fraction`` in (0, 1]: 1 recomputes all of them, 0.5 the lower half (rounded up). Returns the block indices
    changed. The change lives on the module instances only: ``state_dict`` and adapter files are unaffected.
    Raises if the model has no adapters or a block's MLP is not timm's ``Mlp``.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise ValueError(f"fraction={fraction!r} is not allowed: use a number in (0, 1] (1 = every frozen MLP)")
    cfg = adapter_config(model)
    if cfg is None:
        raise ValueError("recompute_frozen_mlps needs an adapted model: call prepare(model, 'adapter', ...) first")
    blocks = transformer_blocks(model)
    first = cfg.adapted_blocks(len(blocks))[0]
    eligible = []
    for index in range(first + 1, len(blocks)):
        mlp = getattr(blocks[index], "mlp", None)
        if type(mlp) is not Mlp:
            raise ValueError(f"block {index} has mlp of type {type(mlp).__name__}: recompute_frozen_mlps supports "
                             "timm.layers.Mlp only")
        if not any(p.requires_grad for p in mlp.parameters()):
            eligible.append(index)
    changed = eligible[:math.ceil(fraction * len(eligible) - 1e-9)]  # 1/3 of 12 is 4, not 5
    for index in changed:
        blocks[index].mlp.forward = _recomputing_forward(blocks[index].mlp)
    return changed


__all__ = ["recompute_frozen_mlps"]
