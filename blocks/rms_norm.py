"""RMSNorm over the feature dimension (official xLSTMLarge: float32 reduction, weight, optional bias)."""
from __future__ import annotations

import mlx.core as mx
from pydantic import Field

from .base import Block, BlockParams, register_block
from .ops import add_norm_affine


class RMSNormParams(BlockParams):
    eps: float = Field(1e-6, gt=0, description="Added to the mean square before the square root.")
    use_weight: bool = Field(True, description="Learnable per-feature scale.")
    use_bias: bool = Field(False, description="Learnable per-feature shift.")
    force_float32_reductions: bool = Field(True, description="Reduce in float32 even for bf16/f16 inputs.")


@register_block
class RMSNorm(Block):
    type_name = "rms_norm"
    Params = RMSNormParams
    summary = "Root-mean-square normalisation over features."

    def __init__(self, params: RMSNormParams, inputs):
        super().__init__(params, inputs)
        add_norm_affine(self, inputs[0].dim, params.use_weight, params.use_bias)

    @classmethod
    def infer(cls, params, inputs):
        cls.expect_features(inputs)
        return inputs[0]

    def forward(self, inputs, state, ctx):
        p = self.params
        x = inputs[0]
        if p.force_float32_reductions or x.dtype == mx.float32:
            # one fused kernel accumulating in float32; the weight is applied before rounding to x's dtype
            y = mx.fast.rms_norm(x, self.weight if p.use_weight else None, p.eps)
        else:
            y = (x * mx.rsqrt(mx.mean(x * x, axis=-1, keepdims=True) + p.eps)).astype(x.dtype)  # in x's dtype
            if p.use_weight:
                y = y * self.weight
        if p.use_bias:
            y = y + self.bias
        return y, None
