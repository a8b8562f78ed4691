"""How a quantized weight multiplies: MLX's quantized matmul, or, inside ``dequantized_matmuls()``, the weight
dequantized to the input's dtype and an ordinary matmul. The plan turns the second on for inputs long enough
that it is faster (``plan.DEQUANTIZE_MIN_TOKENS``): a prefill; decoding keeps the quantized matmul, which reads
the packed weight only. Each dequantized weight is a temporary of its own layer, so with the prefill evaluating
layer by layer one layer's float weight exists at a time."""
from __future__ import annotations

import contextlib
import contextvars

import mlx.core as mx

_DEQUANTIZE = contextvars.ContextVar("xlstm_metal_dequantize", default=False)


@contextlib.contextmanager
def dequantized_matmuls(on: bool = True):
    """Within this block (while the graph is built), quantized weights multiply dequantized (``on``)."""
    token = _DEQUANTIZE.set(bool(on))
    try:
        yield
    finally:
        _DEQUANTIZE.reset(token)


def quantized_matmul_t(x: mx.array, weight: mx.array, scales: mx.array, biases: mx.array | None, *,
                       group_size: int, bits: int, mode: str = "affine") -> mx.array:
    """``x @ W.T`` for the quantized ``W`` (``weight``, ``scales``, ``biases`` as ``mx.quantize`` returns them)."""
    if _DEQUANTIZE.get():
        w = mx.dequantize(weight, scales, biases, group_size=group_size, bits=bits, mode=mode, dtype=x.dtype)
        return x @ w.T
    return mx.quantized_matmul(x, weight, scales, biases, transpose=True, group_size=group_size, bits=bits, mode=mode)
