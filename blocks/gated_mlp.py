"""A gated MLP with a choice of activation: ``proj_down(act(proj_up_gate(x)) * proj_up(x))`` (GLU family)."""
from __future__ import annotations

from typing import Literal

import mlx.core as mx
import mlx.nn as nn
from pydantic import Field

from .base import register_block, tp_reduce
from .swiglu import SwiGLU, SwiGLUParams

_ACTS = {"silu": nn.silu, "gelu": nn.gelu, "relu": nn.relu, "sigmoid": mx.sigmoid, "gelu_tanh": nn.gelu_approx}


class GatedMLPParams(SwiGLUParams):
    activation: Literal["silu", "gelu", "gelu_tanh", "relu", "sigmoid"] = Field("gelu", description="Gate activation (silu = SwiGLU, gelu = GeGLU, ...).")


@register_block
class GatedMLP(SwiGLU):
    type_name = "gated_mlp"
    Params = GatedMLPParams
    summary = "Gated MLP (GLU family) with a configurable gate activation."

    def forward(self, inputs, state, ctx):
        x = inputs[0]
        if self.params.weight_mode == "single":
            gate, z = self.proj_up_gate(x), self.proj_up(x)
        else:
            gz = self.proj_up_gate_z(x)
            gate, z = gz[..., : self.hidden], gz[..., self.hidden:]
        return tp_reduce(self, self.proj_down(_ACTS[self.params.activation](gate) * z)), None
