"""Residual add + the RMSNorm that reads it, in one launch: ``s = a + b`` (rounded as the separate add rounds it)
and ``y = rms_norm(s) * weight`` (float32 sum of squares, as ``mx.fast.rms_norm``, rounded once); both written."""
from __future__ import annotations

import mlx.core as mx

from .gpu import Fused, constant, native_on_cpu, random_normal, relative_error
from .registry import FusionRule, register_fusion
from .row_kernels import register_row_family, row_kernel

# One threadgroup per row of D features; thread t holds elements t, t + THREADS, ... in registers.
_BODY = """
    const int tid = TID;
    const long base = (long)GX * D;
    constexpr int PER = (D + THREADS - 1) / THREADS;
    SHARED float red[THREADS];
    float s[PER];
    UNROLL
    for (int u = 0; u < PER; ++u) {  // every load before any store (the outputs may alias the inputs)
        const int e = tid + u * THREADS;
        s[u] = e < D ? static_cast<float>(a_[base + e]) : 0.0f;
        s[u] = e < D ? s[u] + static_cast<float>(b_[base + e]) : 0.0f;
    }
    float squares = 0.0f;
    UNROLL
    for (int u = 0; u < PER; ++u) {
        const int e = tid + u * THREADS;
        const T v = static_cast<T>(s[u]);  // the sum, rounded as the separate add rounds it
        s[u] = static_cast<float>(v);
        if (e < D) sum_out[base + e] = v;
        squares += s[u] * s[u];
    }
    BLOCK_SUM(squares, total)
    const float inv = rsqrt(total / static_cast<float>(D) + eps_[0]);
    UNROLL
    for (int u = 0; u < PER; ++u) {
        const int e = tid + u * THREADS;
        if (e < D) norm_out[base + e] = static_cast<T>(s[u] * inv * static_cast<float>(w_[e]));
    }
"""
THREADS = 1024
KERNEL = row_kernel("xlstm_add_rms_norm", _BODY, ["a_", "b_", "w_", "eps_"], ["sum_out", "norm_out"], THREADS)


def add_rms_norm_native(a: mx.array, b: mx.array, weight: mx.array, eps: float):
    """The unfused operations: ``(a + b, mx.fast.rms_norm(a + b, weight, eps))``."""
    s = a + b
    return s, mx.fast.rms_norm(s, weight, eps)


def _make(backend: str, kernel=None):
    def add_rms_norm(a, b, weight, eps):
        if a.shape != b.shape or a.dtype != b.dtype or weight.shape != (a.shape[-1],) or a.size == 0:
            return add_rms_norm_native(a, b, weight, eps)  # broadcasting or mixed dtypes: the plain ops
        D = a.shape[-1]
        s, y = (kernel or KERNEL.compiled(backend))(
            inputs=[a, b, weight, constant((float(eps),), mx.float32)], template=[("T", a.dtype), ("D", D)],
            grid=(a.size // D * THREADS, 1, 1), threadgroup=(THREADS, 1, 1), output_shapes=[a.shape, a.shape],
            output_dtypes=[a.dtype, a.dtype])
        return s, y

    return add_rms_norm


def check_errors(fn, dtype=mx.bfloat16) -> float:
    """Worst relative error of ``fn`` on the CPU (row widths not a multiple of the threadgroup)."""
    normal = random_normal(dtype)
    args = [(normal(*shape), normal(*shape), normal(shape[-1]), 1e-6) for shape in ((3, 2, 300), (1, 1, 64))]
    return relative_error([fn(*a) for a in args], [native_on_cpu(add_rms_norm_native, *a) for a in args])


# bfloat16 outputs: one rounding of y (2^-8 relative) against the native two roundings (x·inv, then ·weight)
FUSED = Fused("residual add + RMSNorm", _make, check_errors, tolerance=2e-2)
register_row_family("add_rms_norm", add_rms_norm_native, FUSED,
                    "residual add, then mx.fast.rms_norm (two launches)", "residual add + RMSNorm (one launch)")


def _applies(add_params, norm_params, add_inputs) -> str | None:
    if len(add_inputs) != 2:
        return f"the add has {len(add_inputs)} inputs (the kernel adds two)"
    if not norm_params.use_weight or norm_params.use_bias:
        return "the RMSNorm is not weight-only"
    if not norm_params.force_float32_reductions:
        return "the RMSNorm reduces in the input dtype (the kernel reduces in float32)"
    return None


def _run(kernel, add_block, norm_block, inputs):
    return kernel.fn(inputs[0], inputs[1], norm_block.weight, norm_block.params.eps)


register_fusion(FusionRule("add_rms_norm", "add", "rms_norm", "add_rms_norm", _applies, _run,
                           doc="a residual add and the RMSNorm that reads its sum"))
