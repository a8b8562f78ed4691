"""Causal multi-head attention with rotary positions and a KV cache as its state (optionally sliding-window).

The cache keeps keys, values, their positions and validity, so decoding token by token equals a
full forward, padded positions are never attended to, and a window bounds the cache's memory.
"""
from __future__ import annotations

import math

import mlx.core as mx
from pydantic import Field

from .base import Block, BlockParams, register_block
from .ops import linear, small_init_std


class AttentionParams(BlockParams):
    num_heads: int = Field(gt=0, description="Attention heads; the feature dim must divide by it.")
    window: int | None = Field(None, gt=0, description="Attend to (and cache) at most this many most recent "
                               "positions; null = all.")
    rope_theta: float | None = Field(10000.0, gt=0, description="Rotary position base; null disables positions.")
    use_bias: bool = Field(False, description="Biases on the projections.")


def rotate(x: mx.array, pos: mx.array, theta: float) -> mx.array:
    """Rotary embedding of x [B, NH, S, hd] at integer positions pos [B, S]."""
    hd = x.shape[-1]
    half = hd // 2
    inv = mx.exp(-math.log(theta) * mx.arange(0, half, dtype=mx.float32) / half)
    ang = pos.astype(mx.float32)[:, None, :, None] * inv  # [B,1,S,half]
    cos, sin = mx.cos(ang), mx.sin(ang)
    x1, x2 = x[..., :half].astype(mx.float32), x[..., half:2 * half].astype(mx.float32)
    out = mx.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)
    if hd % 2:
        out = mx.concatenate([out, x[..., 2 * half:].astype(mx.float32)], axis=-1)
    return out.astype(x.dtype)


@register_block
class Attention(Block):
    type_name = "attention"
    Params = AttentionParams
    stateful = True
    fixed_size_state = False
    summary = "Causal multi-head attention (RoPE), KV cache state, optional sliding window."

    def __init__(self, params: AttentionParams, inputs):
        super().__init__(params, inputs)
        D = inputs[0].dim
        std, b = small_init_std(D), params.use_bias
        self.q, self.k, self.v = linear(D, D, b, std), linear(D, D, b, std), linear(D, D, b, std)
        self.out_proj = linear(D, D, b, small_init_std(D))

    @classmethod
    def infer(cls, params, inputs):
        return cls.expect_heads(inputs, params.num_heads)

    def init_state(self, batch_size: int):
        nh = self.params.num_heads
        hd = self._input_types[0].dim // nh
        empty = mx.zeros((batch_size, nh, 0, hd), mx.float32)
        return (empty, empty, mx.zeros((batch_size, 0), mx.int32), mx.zeros((batch_size, 0), mx.bool_),
                mx.zeros((batch_size,), mx.int32))

    def forward(self, inputs, state, ctx):
        x = inputs[0]
        B, S, D = x.shape
        p = self.params
        nh, hd = p.num_heads, D // p.num_heads
        if state is None:
            state = self.init_state(B)
        k_cache, v_cache, pos_cache, valid_cache, next_pos = state
        real = ctx.mask.astype(mx.bool_) if ctx.mask is not None else mx.ones((B, S), mx.bool_)
        steps = real.astype(mx.int32)
        # padding does not advance positions; a one-token step needs no scan (MLX-CUDA 0.32.4 mishandles scans
        # over a length-1 axis inside larger graphs, see kernels/mlstm/native._running_sum)
        pos = next_pos[:, None] + (steps if S == 1 else mx.cumsum(steps, axis=1)) - 1
        heads = lambda t: t.reshape(B, S, nh, hd).transpose(0, 2, 1, 3)  # noqa: E731
        q, k, v = heads(self.q(x)), heads(self.k(x)), heads(self.v(x))
        if p.rope_theta:
            q, k = rotate(q, pos, p.rope_theta), rotate(k, pos, p.rope_theta)
        keys = mx.concatenate([k_cache.astype(k.dtype), k], axis=2)
        vals = mx.concatenate([v_cache.astype(v.dtype), v], axis=2)
        kpos = mx.concatenate([pos_cache, pos], axis=1)
        kvalid = mx.concatenate([valid_cache, real], axis=1)
        allowed = kvalid[:, None, :] & (kpos[:, None, :] <= pos[:, :, None])
        T = keys.shape[2]
        causal_new = mx.concatenate([mx.ones((S, T - S), mx.bool_), mx.tril(mx.ones((S, S), mx.bool_))], axis=1)
        allowed = allowed & causal_new[None]
        if p.window:
            allowed = allowed & (kpos[:, None, :] > pos[:, :, None] - p.window)
        scores = (q.astype(mx.float32) @ keys.astype(mx.float32).swapaxes(-1, -2)) / math.sqrt(hd)
        scores = mx.where(allowed[:, None], scores, -mx.inf)
        any_key = mx.any(allowed, axis=-1)[:, None, :, None]  # padded queries may see nothing
        w = mx.softmax(mx.where(any_key, scores, 0.0), axis=-1)
        h = (w @ vals.astype(mx.float32)).astype(x.dtype)
        h = mx.where(any_key, h, 0).transpose(0, 2, 1, 3).reshape(B, S, D)
        if p.window:  # keep the cache bounded: the last `window` slots
            last = slice(-p.window, None)
            keys, vals, kpos, kvalid = keys[:, :, last], vals[:, :, last], kpos[:, last], kvalid[:, last]
        new_next = next_pos + mx.sum(real.astype(mx.int32), axis=1)
        return self.out_proj(h), (keys.astype(mx.float32), vals.astype(mx.float32), kpos, kvalid, new_next)
