"""Small numeric helpers shared by several blocks."""
from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from xlstm_metal.kernels.fast_math import fused, sigmoid
from xlstm_metal.kernels.ops import sigmoid_gate, soft_cap  # noqa: F401  (shared with the kernels)


@fused
def silu_gate(gate: mx.array, z: mx.array) -> mx.array:
    """SwiGLU's ``silu(gate) * z``."""
    return gate * sigmoid(gate) * z


def round_up_to_multiple(x: float, multiple: int) -> int:
    """As the official FFN sizing does it: 4096 * 2.667 rounded up to a multiple of 64 is 10944."""
    return int(((x + multiple - 1) // multiple) * multiple)


def small_init_std(dim: int) -> float:
    """Std of the "small init" (Nguyen & Salazar) used by xLSTM for projections: sqrt(2 / (5 d))."""
    return (2.0 / (5.0 * dim)) ** 0.5


def linear(d_in: int, d_out: int, bias: bool, std: float) -> nn.Linear:
    """``nn.Linear`` with normal(0, std) weights and zero bias."""
    layer = nn.Linear(d_in, d_out, bias=bias)
    layer.weight = mx.random.normal((d_out, d_in)) * std
    if bias:
        layer.bias = mx.zeros((d_out,))
    return layer


def add_norm_affine(module, dim: int, use_weight: bool, use_bias: bool, residual_weight: bool = False) -> None:
    """A norm's optional per-feature ``weight`` (ones; zeros when stored as a residual, the scale being
    ``1 + weight``) and ``bias`` (zeros), under the official names."""
    if use_weight:
        module.weight = mx.zeros((dim,)) if residual_weight else mx.ones((dim,))
    if use_bias:
        module.bias = mx.zeros((dim,))
