"""Trade a little time for memory in the frozen part of an adapted ViT (beyond the paper; off by default).

A frozen MLP above the first adapter still needs its *input* gradient, so autograd keeps the 4d-wide input of
GELU for backward. Recomputing ``fc1 + act`` in backward from the d-wide block input (activation checkpointing
of that piece only) drops those tensors. The arithmetic is the same, so outputs and gradients are unchanged;
the benchmark (``benchmarks/``) measures what it saves and costs.
"""
from __future__ import annotations

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


def recompute_frozen_mlps(model: nn.Module) -> list[int]:
    """Make every frozen timm ``Mlp`` from the first adapted block on recompute its hidden layer in backward.

    Returns the block indices changed. Blocks below the first adapter are left alone (nothing there is
    differentiated). The change lives on the module instances only: ``state_dict`` and adapter files are
    unaffected. Raises if the model has no adapters or a block's MLP is not timm's ``Mlp``.
    """
    cfg = adapter_config(model)
    if cfg is None:
        raise ValueError("recompute_frozen_mlps needs an adapted model: call prepare(model, 'adapter', ...) first")
    blocks = transformer_blocks(model)
    first = cfg.adapted_blocks(len(blocks))[0]
    changed = []
    for index in range(first, len(blocks)):
        mlp = getattr(blocks[index], "mlp", None)
        if type(mlp) is not Mlp:
            raise ValueError(f"block {index} has mlp of type {type(mlp).__name__}: recompute_frozen_mlps supports "
                             "timm.layers.Mlp only")
        if any(p.requires_grad for p in mlp.parameters()):
            continue
        mlp.forward = _recomputing_forward(mlp)
        changed.append(index)
    return changed


__all__ = ["recompute_frozen_mlps"]
