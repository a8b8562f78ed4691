"""Layer norm over the feature dimension, as the official ``xlstm`` package's ``LayerNorm`` stores it:
optional bias, and with ``residual_weight`` the scale is ``1 + weight`` (weight initialised to zeros)."""
from __future__ import annotations

import mlx.core as mx
from pydantic import Field

from .base import Block, BlockParams, register_block
from .ops import add_norm_affine


class LayerNormParams(BlockParams):
    eps: float = Field(1e-5, gt=0, description="Added to the variance.")
    use_weight: bool = Field(True, description="Learnable per-feature scale.")
    use_bias: bool = Field(False, description="Learnable per-feature shift.")
    residual_weight: bool = Field(True, description="The scale is 1 + weight (the official xLSTM LayerNorm).")


def norm_scale(weight: mx.array | None, residual: bool) -> mx.array | None:
    """The multiplier a stored norm ``weight`` stands for: ``1 + weight`` when stored as a residual."""
    return None if weight is None else (1.0 + weight if residual else weight)


@register_block
class LayerNorm(Block):
    type_name = "layer_norm"
    Params = LayerNormParams
    summary = "Layer norm over features (official xLSTM form: residual weight, optional bias)."

    def __init__(self, params: LayerNormParams, inputs):
        super().__init__(params, inputs)
        add_norm_affine(self, inputs[0].dim, params.use_weight, params.use_bias, params.residual_weight)

    @classmethod
    def infer(cls, params, inputs):
        cls.expect_features(inputs)
        return inputs[0]

    def forward(self, inputs, state, ctx):
        p = self.params
        scale = norm_scale(self.weight if p.use_weight else None, p.residual_weight)
        return mx.fast.layer_norm(inputs[0], scale, self.bias if p.use_bias else None, p.eps), None
