"""Helpers shared by several test modules (imported like ``frames``: pytest puts tests/ on sys.path)."""
from __future__ import annotations

import pytest
import torch
from torch import nn


def _fashion_mnist_missing() -> bool:
    from adaptertune.data import DatasetNotFoundError
    from adaptertune.data.mini import locate_fashion_mnist

    try:
        locate_fashion_mnist()
    except DatasetNotFoundError:
        return True
    return False


needs_fashion_mnist = pytest.mark.skipif(_fashion_mnist_missing(),
                                         reason="Fashion-MNIST not installed (make setup installs it)")


def perturb_trainable(model: nn.Module, amount: float = 0.05) -> nn.Module:
    """Stand in for training: add noise to every trainable tensor (zero-init adapters would otherwise be no-ops)."""
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(amount * torch.randn_like(p))
    return model
