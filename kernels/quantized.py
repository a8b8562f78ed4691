"""How a quantized weight multiplies: MLX's quantized matmul, or, inside ``dequantized_matmuls()``, the weight
dequantized to the input's dtype and an ordinary matmul. The plan turns the second on for inputs long enough
that it is faster (``dequantize_min_tokens``): a prefill; decoding keeps the quantized matmul, which reads
the packed weight only. Each dequantized weight is a temporary of its own layer, so with the prefill evaluating
layer by layer one layer's float weight exists at a time."""
from __future__ import annotations

import contextlib
import contextvars

import mlx.core as mx

_DEQUANTIZE = contextvars.ContextVar("xlstm_metal_dequantize", default=False)
# From this many tokens per segment, per backend, dequantize + matmul beats MLX's quantized matmul: on the CPU
# the quantized product is 20x slower from 16 rows on (6x at 16, 0.7x for one row); on CUDA it is the weak part of
# a 4-bit prefill and dequantizing costs one write and read of a layer's weights; Metal's quantized kernels are
# MLX's reference, kept (None: never dequantize).
DEQUANTIZE_MIN_TOKENS = {"cpu": 2, "cuda": 64, "metal": None}


def dequantize_min_tokens(device: str) -> int | None:
    """The fewest tokens per segment from which a quantized model multiplies by dequantized weights on ``device``
    ("cpu" or "gpu": this machine's GPU backend); None for never."""
    backend = "cpu" if device == "cpu" else "cuda" if mx.cuda.is_available() else "metal"
    return DEQUANTIZE_MIN_TOKENS[backend]


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
