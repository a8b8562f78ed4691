"""Layer norm applied per head: each head's features are normalised on their own (xLSTM's h norm)."""
from __future__ import annotations

from pydantic import Field

from xlstm_metal.kernels.ops import multihead_layer_norm

from .base import Block, BlockParams, register_block
from .ops import add_norm_affine


class MultiHeadLayerNormParams(BlockParams):
    num_heads: int = Field(gt=0, description="Number of heads the features split into.")
    eps: float = Field(1e-6, gt=0, description="Added to the variance.")
    use_weight: bool = Field(True, description="Learnable per-feature scale.")
    use_bias: bool = Field(False, description="Learnable per-feature shift.")
    force_float32_reductions: bool = Field(True, description="Reduce in float32 even for bf16/f16 inputs.")


@register_block
class MultiHeadLayerNorm(Block):
    type_name = "multihead_layer_norm"
    Params = MultiHeadLayerNormParams
    summary = "Layer norm per head over its features."

    def __init__(self, params: MultiHeadLayerNormParams, inputs):
        super().__init__(params, inputs)
        add_norm_affine(self, inputs[0].dim, params.use_weight, params.use_bias)

    @classmethod
    def infer(cls, params, inputs):
        return cls.expect_heads(inputs, params.num_heads)

    def forward(self, inputs, state, ctx):
        x = inputs[0]
        B, S, D = x.shape
        p = self.params
        y = multihead_layer_norm(x.reshape(B, S, p.num_heads, D // p.num_heads),
                                 self.weight if p.use_weight else None, self.bias if p.use_bias else None,
                                 p.eps, p.force_float32_reductions)
        return y, None
