"""SwiGLU feed-forward: ``proj_down(silu(proj_up_gate(x)) * proj_up(x))`` (official xLSTMLarge FFN).

Both up projections are one parameter, ``proj_up_gate_z`` (gate rows first; the official fused
name), so a call does one matmul; a single-mode checkpoint's ``proj_up_gate`` / ``proj_up`` are
mapped to it by ``xlstm_metal.checkpoint.sanitize``.
"""
from __future__ import annotations

from typing import Literal

import mlx.core as mx
import mlx.nn as nn
from pydantic import Field

from .base import Block, BlockParams, ShapeError, register_block, tp_reduce
from .ops import round_up_to_multiple, silu_gate, small_init_std


class SwiGLUParams(BlockParams):
    proj_factor: float = Field(2.6667, gt=0, description="Hidden width = dim * proj_factor, rounded up.")
    round_up_to: int = Field(64, gt=0, description="Round the hidden width up to a multiple of this.")
    use_bias: bool = Field(False, description="Biases on the projections.")
    weight_mode: Literal["single", "fused"] = Field(
        "single", description="Checkpoint names: single: proj_up_gate + proj_up; fused: proj_up_gate_z.")


def linear(d_in: int, d_out: int, bias: bool, std: float) -> nn.Linear:
    layer = nn.Linear(d_in, d_out, bias=bias)
    layer.weight = mx.random.normal((d_out, d_in)) * std
    if bias:
        layer.bias = mx.zeros((d_out,))
    return layer


@register_block
class SwiGLU(Block):
    type_name = "swiglu"
    Params = SwiGLUParams
    summary = "Gated feed-forward with SiLU gate."

    def __init__(self, params: SwiGLUParams, inputs):
        super().__init__(params, inputs)
        dim = inputs[0].dim
        self.hidden = round_up_to_multiple(dim * params.proj_factor, params.round_up_to)
        std = small_init_std(dim)
        self.proj_up_gate_z = linear(dim, 2 * self.hidden, params.use_bias, std)
        self.proj_down = linear(self.hidden, dim, params.use_bias, small_init_std(self.hidden))

    @classmethod
    def infer(cls, params, inputs):
        dim = cls.expect_features(inputs)
        if round_up_to_multiple(dim * params.proj_factor, params.round_up_to) == 0:
            raise ShapeError(f"hidden width {dim} x proj_factor {params.proj_factor} rounds to 0 "
                             f"(multiples of {params.round_up_to})", field="proj_factor")
        return inputs[0]

    def activate(self, gate: mx.array) -> mx.array:
        return nn.silu(gate)

    def forward(self, inputs, state, ctx):
        x = inputs[0]
        gate, z = mx.split(self.proj_up_gate_z(x), [self.hidden], axis=-1)
        if type(self).activate is SwiGLU.activate:  # the plain SiLU gate: one fused pass on the GPU
            hidden = silu_gate(gate, z)
        else:
            hidden = self.activate(gate) * z
        return tp_reduce(self, self.proj_down(hidden)), None
