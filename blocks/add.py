"""Residual addition of two or more feature tensors of the same width (explicit in specs)."""
from __future__ import annotations

from .base import Block, BlockParams, ShapeError, register_block


class AddParams(BlockParams):
    pass


@register_block
class Add(Block):
    type_name = "add"
    Params = AddParams
    num_inputs = None
    summary = "Elementwise sum of >= 2 inputs (residual connections)."

    @classmethod
    def infer(cls, params, inputs):
        dims = [cls.expect_features(inputs, k, f"input {k + 1}") for k in range(len(inputs))]
        if len(set(dims)) != 1:
            raise ShapeError(f"inputs have different feature dims {dims}; add needs equal widths", field="inputs")
        return inputs[0]

    def forward(self, inputs, state, ctx):
        return sum(inputs[1:], inputs[0]), None  # left to right: ((x0 + x1) + x2) ...
