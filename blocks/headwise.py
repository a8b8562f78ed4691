"""Block-diagonal ("headwise") projection, the official ``LinearHeadwiseExpand``: the features split into
heads and each head has its own small matrix, ``weight`` [heads, out per head, in per head]."""
from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from .ops import small_init_std


class HeadwiseLinear(nn.Module):
    def __init__(self, dim: int, num_heads: int, bias: bool, std: float | None = None):
        super().__init__()
        per_head = dim // num_heads
        std = small_init_std(per_head) if std is None else std
        self.weight = mx.random.normal((num_heads, per_head, per_head)) * std
        if bias:
            self.bias = mx.zeros((dim,))

    def __call__(self, x: mx.array) -> mx.array:
        nh, _, d_in = self.weight.shape
        y = (x.reshape(*x.shape[:-1], nh, 1, d_in) @ self.weight.swapaxes(-1, -2)).reshape(x.shape)
        return y + self.bias if "bias" in self else y
