"""A gated MLP with a choice of activation: ``proj_down(act(proj_up_gate(x)) * proj_up(x))`` (GLU family)."""
from __future__ import annotations

from typing import Literal

import mlx.core as mx
import mlx.nn as nn
from pydantic import Field

from .base import register_block
from .swiglu import SwiGLU, SwiGLUParams

_ACTS = {"silu": nn.silu, "gelu": nn.gelu, "relu": nn.relu, "sigmoid": mx.sigmoid, "gelu_tanh": nn.gelu_approx}


class GatedMLPParams(SwiGLUParams):
    activation: Literal["silu", "gelu", "gelu_tanh", "relu", "sigmoid"] = Field(
        "gelu", description="Gate activation (silu = SwiGLU, gelu = GeGLU, ...).")


@register_block
class GatedMLP(SwiGLU):
    type_name = "gated_mlp"
    Params = GatedMLPParams
    summary = "Gated MLP (GLU family) with a configurable gate activation."

    def glu(self, gate: mx.array, z: mx.array) -> mx.array:
        return _ACTS[self.params.activation](gate) * z
