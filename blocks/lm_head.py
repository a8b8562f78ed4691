"""Language-model head: features → vocabulary logits, soft-capped (official: 30) in float32."""
from __future__ import annotations

import mlx.core as mx
from pydantic import Field

from .base import Block, BlockParams, TensorType, register_block
from .ops import soft_cap, small_init_std
from .quantizable import QuantizableWeight


class LMHeadParams(BlockParams):
    vocab_size: int = Field(gt=0, description="Number of output logits.")
    soft_cap: float | None = Field(30.0, gt=0,
                                   description="Logits become soft_cap * tanh(logits / soft_cap); null disables.")
    use_bias: bool = Field(False, description="Bias on the output projection.")


@register_block
class LMHead(QuantizableWeight, Block):
    type_name = "lm_head"
    Params = LMHeadParams
    summary = "Output projection to vocabulary logits with soft-cap."

    def __init__(self, params: LMHeadParams, inputs):
        super().__init__(params, inputs)
        dim = inputs[0].dim
        self.weight = mx.random.normal((params.vocab_size, dim)) * small_init_std(dim)
        if params.use_bias:
            self.bias = mx.zeros((params.vocab_size,))

    @classmethod
    def infer(cls, params, inputs):
        cls.expect_features(inputs)
        return TensorType.features(params.vocab_size)

    def forward(self, inputs, state, ctx):
        logits = self.matmul_weight_t(inputs[0])
        if self.params.use_bias:
            logits = logits + self.bias
        logits = logits.astype(mx.float32)
        return soft_cap(logits, self.params.soft_cap), None
