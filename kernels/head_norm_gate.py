"""The end of an mLSTM layer before its out_proj in one launch (instead of a transposing copy, a norm and a gate):
``sigmoid(o) * (layer_norm_per_head(h) * weight + bias)``, reading ``h`` in the cell's [B, NH, S, DV] layout,
normalising in float32 (two-pass mean and biased variance, as the official norm) and rounding once."""
from __future__ import annotations

import mlx.core as mx

from .gpu import Fused, constant, native_on_cpu, random_normal, relative_error
from .ops import multihead_layer_norm, sigmoid_gate
from .row_kernels import register_row_family, row_kernel

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
THREADS = 256
KERNEL = row_kernel("xlstm_head_norm_gate", _BODY, ["h_", "o_", "w_", "b_", "eps_", "meta_"], ["out"], THREADS)


def head_norm_gate_native(h: mx.array, o: mx.array, weight: mx.array, bias: mx.array | None, eps: float) -> mx.array:
    """``h`` [B, NH, S, DV], ``o`` [B, S, NH*DV] → ``sigmoid(o) * (layer_norm_per_head(h) * weight + bias)``."""
    return sigmoid_gate(o, multihead_layer_norm(h.transpose(0, 2, 1, 3), weight, bias, eps, True))


def _make(backend: str, kernel=None):
    def head_norm_gate(h, o, weight, bias, eps):
        B, NH, S, DV = h.shape
        if o.shape != (B, S, NH * DV) or o.dtype != h.dtype or h.size == 0 or weight.shape != (NH * DV,):
            return head_norm_gate_native(h, o, weight, bias, eps)
        (y,) = (kernel or KERNEL.compiled(backend))(
            inputs=[h, o, weight, bias if bias is not None else weight, constant((float(eps),), mx.float32),
                    constant((S,), mx.int32)],
            template=[("T", h.dtype), ("NH", NH), ("DV", DV), ("HAS_BIAS", int(bias is not None))],
            grid=(B * S * NH * THREADS, 1, 1), threadgroup=(THREADS, 1, 1), output_shapes=[o.shape],
            output_dtypes=[h.dtype])
        return y

    return head_norm_gate


def check_errors(fn, dtype=mx.bfloat16) -> float:
    """Worst relative error of ``fn`` against the native ops on the CPU (odd head widths, with and without bias)."""
    normal = random_normal(dtype)
    shapes = ((2, 3, 5, 300, True), (1, 2, 1, 64, False))
    args = [(normal(B, NH, S, DV, scale=3.0, shift=1.0), normal(B, S, NH * DV), normal(NH * DV),
             normal(NH * DV) if bias else None, 1e-6) for B, NH, S, DV, bias in shapes]
    return relative_error([fn(*a) for a in args], [native_on_cpu(head_norm_gate_native, *a) for a in args])


FUSED = Fused("head norm + output gate", _make, check_errors, tolerance=2e-2)  # bfloat16: one rounding, not several
register_row_family("head_norm_gate", head_norm_gate_native, FUSED,
                    "per-head mx.fast.layer_norm, then the compiled sigmoid gate",
                    "per-head layer norm + output gate (one launch)")
