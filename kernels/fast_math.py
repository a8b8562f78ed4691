"""Elementwise exponentials that are fast on MLX's CPU backend, and ``fused``: elementwise chains as one kernel.

MLX's CPU ``exp`` / ``sigmoid`` / ``sqrt`` run about 20x slower per element than its ``+`` and ``*``. Here ``exp``
on the CPU is ``2**n * e**r`` (``x = n ln2 + r``, reduced in two parts; ``e**r`` Cephes' degree-7 polynomial; ``2**n``
written into the float's exponent bits): within 2 float32 ulps, 0 below ``2**-126`` (and for -inf), inf from
``2**127.5`` up, NaN for NaN. Under ``fused`` (``mx.compile``) its dozen cheap ops become one loop. On the GPU these
are MLX's own ops. The device is read when a function is traced, so ``fused`` keeps one compiled trace per device.
"""
from __future__ import annotations

import mlx.core as mx

SMALL = 4096  # below this many elements MLX's one op costs less to dispatch than the polynomial's dozen
_LOG2E = 1.4426950408889634
_LN2_HI, _LN2_LO = 0.693359375, -2.12194440e-4  # ln(2) in two parts: n * _LN2_HI is exact (Cody-Waite)
# (e**r - 1 - r) / r**2 on |r| <= ln(2) / 2 (Cephes expf), highest degree first
_EXP_POLY = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1)


def on_cpu() -> bool:
    return mx.default_device().type == mx.DeviceType.cpu


def exp(x: mx.array) -> mx.array:
    """``e**x`` (on the CPU computed in float32 and returned in ``x``'s dtype); its gradient is ``cotangent * e**x``."""
    return _cpu_exp(x) if x.size >= SMALL and on_cpu() else mx.exp(x)


@mx.custom_function
def _cpu_exp(x: mx.array) -> mx.array:
    dtype = x.dtype
    x = mx.clip(x.astype(mx.float32), -88.5, 88.8)
    n = mx.clip(mx.floor(x * _LOG2E + 0.5), -127.0, 128.0)  # -127: exponent bits 0 (zero); 128: inf
    r = (x - n * _LN2_HI) - n * _LN2_LO  # |r| <= ln(2) / 2, exact up to float32 rounding of r itself
    p = mx.array(_EXP_POLY[0], mx.float32)
    for c in _EXP_POLY[1:]:
        p = p * r + c
    y = (p * r * r + r + 1.0) * mx.left_shift(n.astype(mx.int32) + 127, 23).view(mx.float32)
    return y if dtype == mx.float32 else y.astype(dtype)


@_cpu_exp.vjp
def _cpu_exp_vjp(primals, cotangent, output):
    return cotangent * output


def sigmoid(x: mx.array) -> mx.array:
    """``1 / (1 + e**-x)``."""
    return mx.reciprocal(1.0 + _cpu_exp(-x)) if x.size >= SMALL and on_cpu() else mx.sigmoid(x)


def fused(fn):
    """``fn`` (elementwise ops) compiled into one kernel, traced separately for each device."""
    compiled = {"cpu": mx.compile(fn), "gpu": mx.compile(fn)}

    def call(*args):
        return compiled["cpu" if on_cpu() else "gpu"](*args)

    call.__doc__, call.__name__, call.__wrapped__ = fn.__doc__, fn.__name__, fn
    return call
