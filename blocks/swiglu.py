"""SwiGLU feed-forward: ``proj_down(silu(proj_up_gate(x)) * proj_up(x))`` (official xLSTMLarge FFN).

Both up projections are one parameter, ``proj_up_gate_z`` (gate rows first; the official fused
name), so a call does one matmul; ``xlstm_metal.checkpoint.sanitize`` maps the single names to it.
"""
from __future__ import annotations

from typing import Literal

import mlx.core as mx
from pydantic import Field

from .base import Block, BlockParams, ShapeError, register_block, tp_reduce
from .ops import linear, round_up_to_multiple, silu_gate, small_init_std


class SwiGLUParams(BlockParams):
    proj_factor: float = Field(2.6667, gt=0, description="Hidden width = dim * proj_factor, rounded up.")
    round_up_to: int = Field(64, gt=0, description="Round the hidden width up to a multiple of this.")
    use_bias: bool = Field(False, description="Biases on the projections.")
    weight_mode: Literal["single", "fused", "proj_up"] = Field(
        "single", description="Checkpoint names: single: proj_up_gate + proj_up; fused: proj_up_gate_z; "
        "proj_up: one proj_up, gate rows first (the xlstm package's GatedFeedForward).")


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

    def glu(self, gate: mx.array, z: mx.array) -> mx.array:
        """``act(gate) * z``; SiLU here, as one fused pass on the GPU."""
        return silu_gate(gate, z)

    def forward(self, inputs, state, ctx):
        gate, z = mx.split(self.proj_up_gate_z(inputs[0]), [self.hidden], axis=-1)
        return tp_reduce(self, self.proj_down(self.glu(gate, z))), None
