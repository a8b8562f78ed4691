"""Causal depthwise 1-D convolution over time, with the last ``kernel_size - 1`` inputs as its state.

Padding: masked positions are skipped exactly for left padding (the usual batched-prompt layout):
the state then continues right before each row's first real token.
"""
from __future__ import annotations

import mlx.core as mx
from pydantic import Field

from .base import Block, BlockParams, register_block


class CausalConv1dParams(BlockParams):
    kernel_size: int = Field(4, ge=1, description="Taps over the current and previous kernel_size - 1 positions.")
    use_bias: bool = Field(True, description="Per-feature bias.")


@register_block
class CausalConv1d(Block):
    type_name = "causal_conv1d"
    Params = CausalConv1dParams
    stateful = True
    summary = "Causal depthwise convolution over time (state: the last kernel_size - 1 inputs)."

    def __init__(self, params: CausalConv1dParams, inputs):
        super().__init__(params, inputs)
        dim, K = inputs[0].dim, params.kernel_size
        self.weight = mx.random.normal((dim, K)) * (1.0 / K) ** 0.5
        if params.use_bias:
            self.bias = mx.zeros((dim,))

    @classmethod
    def infer(cls, params, inputs):
        cls.expect_features(inputs)
        return inputs[0]

    def init_state(self, batch_size: int):
        return (mx.zeros((batch_size, self.params.kernel_size - 1, self._input_types[0].dim), dtype=mx.float32),)

    def forward(self, inputs, state, ctx):
        bias = self.bias if self.params.use_bias else None
        return causal_conv(inputs[0], None if state is None else state[0], self.weight, bias, ctx.mask)


def causal_conv(x: mx.array, prev: mx.array | None, weight: mx.array, bias: mx.array | None,
                mask: mx.array | None) -> tuple[mx.array, tuple[mx.array]]:
    """Depthwise causal convolution of ``x`` [B, S, D] with ``weight`` [D, K] after the ``prev`` inputs
    [B, K - 1, D] (None: zeros); returns the output and the new state ``(last K - 1 inputs,)``."""
    B, S, D = x.shape
    K = weight.shape[1]
    prev = (prev if prev is not None else mx.zeros((B, K - 1, D), mx.float32)).astype(x.dtype)
    if mask is not None:
        keep = mask.astype(mx.bool_)
        x = mx.where(keep[..., None], x, 0)
        pads = S - mx.sum(keep.astype(mx.int32), axis=1)  # left padding per row
        t = mx.arange(K - 1 + S)[None, :]
        # the state moves right by each row's padding, so it sits just before the first real token
        from_state = (t >= pads[:, None]) & (t < pads[:, None] + K - 1)
        idx = mx.clip(t - pads[:, None], 0, K - 2 if K > 1 else 0)
        seq = mx.concatenate([prev, x], axis=1)
        shifted_state = mx.take_along_axis(prev, idx[..., None], axis=1) if K > 1 else mx.zeros_like(seq)
        real = t >= pads[:, None] + K - 1
        seq = mx.where(real[..., None], seq, mx.where(from_state[..., None], shifted_state, 0))
    else:
        seq = mx.concatenate([prev, x], axis=1)
    out = sum(seq[:, j:j + S] * weight[:, j] for j in range(K))
    if bias is not None:
        out = out + bias
    new_state = (seq[:, S:].astype(mx.float32),) if K > 1 else (prev.astype(mx.float32),)
    return out, new_state
