"""Elementwise and normalisation math shared by native kernels and blocks (kernels never import blocks)."""
from __future__ import annotations

import mlx.core as mx

from .fast_math import fused, sigmoid


def gpu_fused(fn):
    """``fn`` (elementwise ops) compiled into one kernel on the GPU; eager on the CPU, where compiling costs more."""
    compiled = mx.compile(fn)

    def call(*args):
        return compiled(*args) if mx.default_device().type == mx.DeviceType.gpu else fn(*args)

    call.__doc__, call.__name__ = fn.__doc__, fn.__name__
    return call


@gpu_fused
def _soft_cap(x: mx.array, cap: float) -> mx.array:
    return cap * mx.tanh(x / cap)


def soft_cap(x: mx.array, cap: float | None) -> mx.array:
    """``cap * tanh(x / cap)``: bounds values smoothly to (-cap, cap); ``None`` leaves x unchanged."""
    if cap is None:
        return x
    return _soft_cap(x, float(cap))


@fused
def sigmoid_gate(o: mx.array, h: mx.array) -> mx.array:
    """The mLSTM output gate: ``sigmoid(o) * h``."""
    return sigmoid(o) * h


def multihead_layer_norm(x: mx.array, weight: mx.array | None, bias: mx.array | None, eps: float,
                         force_float32: bool = True) -> mx.array:
    """``x`` [B, S, NH, DH] → [B, S, NH*DH]: normalise over DH (biased variance), then weight/bias."""
    B, S, NH, DH = x.shape
    dtype = x.dtype
    if force_float32 or dtype == mx.float32:  # one fused kernel, float32 accumulation
        y = mx.fast.layer_norm(x, None, None, eps).reshape(B, S, NH * DH)
    else:
        mean = mx.mean(x, axis=-1, keepdims=True)
        centered = x - mean
        var = mx.mean(centered * centered, axis=-1, keepdims=True)
        y = (centered * mx.rsqrt(var + eps)).reshape(B, S, NH * DH)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y
