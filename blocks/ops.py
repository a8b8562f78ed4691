"""Small numeric helpers shared by several blocks."""
from __future__ import annotations

import mlx.core as mx


def gpu_fused(fn):
    """``fn`` (a chain of elementwise ops) under ``mx.compile`` on the GPU, where MLX fuses it into one
    kernel instead of one pass over memory per op; eager on the CPU, where compiling means running a
    C++ compiler (seconds, once per signature) to save microseconds."""
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


@gpu_fused
def silu_gate(gate: mx.array, z: mx.array) -> mx.array:
    """SwiGLU's ``silu(gate) * z``."""
    return gate * mx.sigmoid(gate) * z


@gpu_fused
def sigmoid_gate(o: mx.array, h: mx.array) -> mx.array:
    """The mLSTM output gate: ``sigmoid(o) * h``."""
    return mx.sigmoid(o) * h


def apply_linear(layer, x: mx.array) -> mx.array:
    """``layer(x)``, or for a plain ``nn.Linear`` the batch-1 GEMV kernel when it is enabled (``kernels.gemv``)."""
    import mlx.nn as nn

    from xlstm_metal.kernels import gemv

    if gemv.enabled() and isinstance(layer, nn.Linear):
        return gemv.matmul(x, layer.weight, layer.get("bias"))
    return layer(x)


def round_up_to_multiple(x: float, multiple: int) -> int:
    """As the official FFN sizing does it: 4096 * 2.667 rounded up to a multiple of 64 is 10944."""
    return int(((x + multiple - 1) // multiple) * multiple)


def small_init_std(dim: int) -> float:
    """Std of the "small init" (Nguyen & Salazar) used by xLSTM for projections: sqrt(2 / (5 d))."""
    return (2.0 / (5.0 * dim)) ** 0.5


def normal(shape, std: float, dtype=mx.float32) -> mx.array:
    return mx.random.normal(shape, dtype=dtype) * std


def add_norm_affine(module, dim: int, use_weight: bool, use_bias: bool) -> None:
    """A norm's optional per-feature ``weight`` (ones) and ``bias`` (zeros), under the official names."""
    if use_weight:
        module.weight = mx.ones((dim,))
    if use_bias:
        module.bias = mx.zeros((dim,))
