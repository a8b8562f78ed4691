"""Token embedding: ids ``[B, S]`` → features ``[B, S, dim]``."""
from __future__ import annotations

from pydantic import Field

from .base import Block, BlockParams, ShapeError, TensorType, register_block
import mlx.core as mx

from .ops import small_init_std
from .quantizable import QuantizableWeight


class EmbeddingParams(BlockParams):
    num_embeddings: int = Field(gt=0, description="Vocabulary size.")
    dim: int = Field(gt=0, description="Embedding (feature) dimension.")


@register_block
class Embedding(QuantizableWeight, Block):
    type_name = "embedding"
    Params = EmbeddingParams
    summary = "Token embedding table: ids [B,S] → [B,S,dim]."

    def __init__(self, params: EmbeddingParams, inputs):
        super().__init__(params, inputs)
        self.weight = mx.random.normal((params.num_embeddings, params.dim)) * small_init_std(params.dim)

    @classmethod
    def infer(cls, params, inputs):
        if inputs[0].kind != "tokens":
            raise ShapeError(f"embedding reads token ids, got {inputs[0]}", field="inputs")
        return TensorType.features(params.dim)

    def forward(self, inputs, state, ctx):
        return self.weight_rows(inputs[0]), None
