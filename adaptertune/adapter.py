"""The AdapterTune bottleneck: ``h + s * (W_up GELU(W_down h + b_down) + b_up)``.

Zero-initialising ``W_up`` and ``b_up`` makes the residual branch exactly 0 for every input, so a model
with fresh adapters computes bit-for-bit what the pretrained model computes (PAPER.md, Method).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields

import torch
from torch import Tensor, nn

INITS = ("zero", "random")


@dataclass(frozen=True)
class AdapterConfig:
    """Everything that defines where adapters go and how they start; validated on construction."""

    rank: int = 16
    every: int = 1
    scale: float = 1.0
    init: str = "zero"
    init_std: float = 1e-4
    start: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank <= 0:
            raise ValueError(f"rank={self.rank!r} is not allowed: rank must be a positive integer (1 <= rank <= embed_dim)")
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every <= 0:
            raise ValueError(f"every={self.every!r} is not allowed: every must be a positive integer (1 = every block)")
        if isinstance(self.start, bool) or not isinstance(self.start, int) or self.start < 0:
            raise ValueError(f"start={self.start!r} is not allowed: start must be an integer >= 0 (first adapted block)")
        if self.init not in INITS:
            raise ValueError(f"init={self.init!r} is not allowed: choose one of {INITS}")
        if not isinstance(self.scale, (int, float)) or not math.isfinite(self.scale):
            raise ValueError(f"scale={self.scale!r} is not allowed: scale must be a finite number")
        if not isinstance(self.init_std, (int, float)) or not self.init_std > 0:
            raise ValueError(f"init_std={self.init_std!r} is not allowed: init_std must be > 0")

    def adapted_blocks(self, depth: int) -> list[int]:
        """Indices that get an adapter: from ``start`` on, every ``every``-th (``(l - start) % every == 0``)."""
        if self.start >= depth:
            raise ValueError(f"start={self.start} is not allowed for a model with {depth} blocks: use 0 <= start < {depth}")
        return list(range(self.start, depth, self.every))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def build(self, dim: int) -> Adapter:
        """One adapter of this config for token width ``dim``."""
        return Adapter(dim, rank=self.rank, scale=self.scale, init=self.init, init_std=self.init_std)


class Adapter(nn.Module):
    """Returns the residual ``s * A(h)`` for a (..., d) token tensor; the caller adds it to ``h``."""

    def __init__(self, dim: int, rank: int = AdapterConfig.rank, scale: float = AdapterConfig.scale,
                 init: str = AdapterConfig.init, init_std: float = AdapterConfig.init_std) -> None:
        super().__init__()
        if not isinstance(dim, int) or dim <= 0:
            raise ValueError(f"dim={dim!r} is not allowed: the token width must be a positive integer")
        AdapterConfig(rank=rank, scale=scale, init=init, init_std=init_std)  # validates
        if rank > dim:
            raise ValueError(f"rank={rank} is not allowed for width {dim}: use 1 <= rank <= {dim}")
        self.dim, self.rank, self.scale, self.init = dim, rank, float(scale), init
        self.init_std = float(init_std)
        self.down = nn.Linear(dim, rank)
        self.act = nn.GELU()
        self.up = nn.Linear(rank, dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """W_down Xavier-uniform, b_down 0 (authors' code); W_up, b_up zero or N(0, init_std^2)."""
        nn.init.xavier_uniform_(self.down.weight)
        nn.init.zeros_(self.down.bias)
        if self.init == "zero":
            nn.init.zeros_(self.up.weight)
            nn.init.zeros_(self.up.bias)
        else:
            nn.init.normal_(self.up.weight, std=self.init_std)
            nn.init.normal_(self.up.bias, std=self.init_std)

    def forward(self, h: Tensor) -> Tensor:
        return self.scale * self.up(self.act(self.down(h)))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, rank={self.rank}, scale={self.scale}, init={self.init!r}"

    @staticmethod
    def num_parameters(dim: int, rank: int) -> int:
        """``2 d r + r + d``: the per-adapter count of PAPER.md's Tab.1 formula."""
        return 2 * dim * rank + rank + dim


def grouped_residual(adapters: Sequence[Adapter], h: Tensor, which: Tensor) -> Tensor:
    """The residual of ``adapters[which[b]]`` for each row ``b`` of ``h`` (B, ..., d), in a fixed number of ops.

    Serving many tasks in one batch: a loop over the adapters costs a few small products per adapter, which
    dominates on small backbones and on GPUs. Here each row gets its adapter's weights (gathered, B × r × d) and
    one batched product per projection does every row. The adapters must share width and rank. Each row's
    result equals its adapter's ``forward`` up to float rounding (the products are summed in another order).
    """
    if not adapters or len({(a.dim, a.rank) for a in adapters}) != 1:
        raise ValueError(f"grouped_residual needs adapters of one width and rank, got "
                         f"{sorted({(a.dim, a.rank) for a in adapters})} (width, rank)")
    if which.ndim != 1 or which.shape[0] != h.shape[0]:
        raise ValueError(f"which must give one adapter index per row: shape {tuple(which.shape)} for {h.shape[0]} rows")

    def per_row(tensors: list[Tensor]) -> Tensor:
        return torch.stack(tensors).index_select(0, which)

    rows = h.reshape(h.shape[0], -1, h.shape[-1])
    down = torch.baddbmm(per_row([a.down.bias for a in adapters]).unsqueeze(1), rows,
                         per_row([a.down.weight for a in adapters]).transpose(1, 2))
    up = torch.baddbmm(per_row([a.up.bias for a in adapters]).unsqueeze(1), adapters[0].act(down),
                       per_row([a.up.weight for a in adapters]).transpose(1, 2))
    scales = {a.scale for a in adapters}
    if len(scales) == 1:
        out = scales.pop() * up
    else:
        out = torch.tensor([a.scale for a in adapters], dtype=up.dtype, device=up.device).index_select(0, which).view(-1, 1, 1) * up
    return out.reshape(h.shape)
