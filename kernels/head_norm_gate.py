"""The end of an mLSTM layer before its out_proj in one launch (instead of a transposing copy, a norm and a gate):
``sigmoid(o) * (layer_norm_per_head(h) * weight + bias)``, reading ``h`` in the cell's [B, NH, S, DV] layout,
normalising in float32 (two-pass mean and biased variance, as the official norm) and rounding once."""
from __future__ import annotations

import mlx.core as mx
import numpy as np

from .gpu import array_error, check_once, constant, worst
from .ops import multihead_layer_norm, sigmoid_gate
from .row_kernels import RowKernel, register_row_family

# A threadgroup per (b, s, head) row in output order; S is an input, so a new prompt length compiles no new kernel.
_BODY = """
    const int tid = TID;
    const int S = meta_[0];
    const int row = GX;
    const int head = row % NH;
    const int bs = row / NH;
    const long hbase = (((long)(bs / S) * NH + head) * S + bs % S) * DV;
    const long obase = (long)row * DV;
    constexpr int PER = (DV + THREADS - 1) / THREADS;
    SHARED float red[THREADS];
    float x[PER];
    float og[PER];
    float part = 0.0f;
    UNROLL
    for (int u = 0; u < PER; ++u) {  // h and o loaded before any store
        const int e = tid + u * THREADS;
        x[u] = e < DV ? static_cast<float>(h_[hbase + e]) : 0.0f;
        og[u] = e < DV ? static_cast<float>(o_[obase + e]) : 0.0f;
        part += x[u];
    }
    BLOCK_SUM(part, total)
    const float mean = total / static_cast<float>(DV);
    float squares = 0.0f;
    UNROLL
    for (int u = 0; u < PER; ++u) {
        const int e = tid + u * THREADS;
        const float d = e < DV ? x[u] - mean : 0.0f;
        squares += d * d;
    }
    BLOCK_SUM(squares, var_total)
    const float inv = rsqrt(var_total / static_cast<float>(DV) + eps_[0]);
    UNROLL
    for (int u = 0; u < PER; ++u) {
        const int e = tid + u * THREADS;
        if (e < DV) {
            const int c = head * DV + e;
            float y = (x[u] - mean) * inv * static_cast<float>(w_[c]);
            if (HAS_BIAS) y += static_cast<float>(b_[c]);
            out[obase + e] = static_cast<T>(y / (1.0f + exp(-og[u])));
        }
    }
"""
KERNEL = RowKernel("xlstm_head_norm_gate", _BODY, ["h_", "o_", "w_", "b_", "eps_", "meta_"], ["out"], threads=256)


def head_norm_gate_native(h: mx.array, o: mx.array, weight: mx.array, bias: mx.array | None, eps: float) -> mx.array:
    """``h`` [B, NH, S, DV], ``o`` [B, S, NH*DV] → ``sigmoid(o) * (layer_norm_per_head(h) * weight + bias)``."""
    return sigmoid_gate(o, multihead_layer_norm(h.transpose(0, 2, 1, 3), weight, bias, eps, True))


def _make(backend: str, make_kernel=None):
    make_kernel = make_kernel or (lambda: KERNEL.compiled(backend))

    def head_norm_gate(h, o, weight, bias, eps):
        B, NH, S, DV = h.shape
        if o.shape != (B, S, NH * DV) or o.dtype != h.dtype or h.size == 0 or weight.shape != (NH * DV,):
            return head_norm_gate_native(h, o, weight, bias, eps)
        out_dtype = h.dtype
        (y,) = KERNEL.launch(make_kernel(), B * S * NH,
                             inputs=[h, o, weight, bias if bias is not None else weight,
                                     constant((float(eps),), mx.float32), constant((S,), mx.int32)],
                             template=[("T", out_dtype), ("NH", NH), ("DV", DV), ("HAS_BIAS", int(bias is not None))],
                             output_shapes=[o.shape], output_dtypes=[out_dtype])
        return y

    return head_norm_gate


TOLERANCE = 2e-2  # bfloat16 outputs: one rounding against the native chain's several
NAME = "head norm + output gate"  # its first-use verdict's name (kernels/gpu.py)


def check_errors(fn, dtype=mx.bfloat16) -> float:
    """Worst relative error of ``fn`` against the native ops on the CPU (odd head widths, with and without bias)."""
    rng = np.random.default_rng(0)
    arr = lambda *s: mx.array(rng.normal(size=s).astype(np.float32)).astype(dtype)  # noqa: E731
    errs = []
    for B, NH, S, DV, bias in ((2, 3, 5, 300, True), (1, 2, 1, 64, False)):
        h, o, w = arr(B, NH, S, DV) * 3.0 + 1.0, arr(B, S, NH * DV), arr(NH * DV)
        b = arr(NH * DV) if bias else None
        got = fn(h, o, w, b, 1e-6)
        with mx.stream(mx.cpu):
            want = head_norm_gate_native(h, o, w, b, 1e-6)
        errs.append(array_error(got, want))
    return worst(errs)


def self_check(backend: str, make_kernel=None, dtype=mx.bfloat16) -> bool:
    fn = _make(backend, make_kernel)
    return check_once(NAME, backend, lambda: check_errors(fn, dtype), tolerance=TOLERANCE)


register_row_family("head_norm_gate", head_norm_gate_native, _make, self_check,
                    "per-head mx.fast.layer_norm, then the compiled sigmoid gate",
                    "per-head layer norm + output gate (one launch)")
