"""Batch-1 matrix-vector product ``y = W x (+ b)`` for bfloat16 weights on CUDA, written to stream the weights at
memory speed: the operation that bounds batch-1 decoding.

Why: batch-1 decoding cannot be faster than its weights can be read. With every product of the 7B model (unmerged,
benchmarks/decode_floor.py on an H200) MLX's GEMVs average 2.4-2.5 TB/s of the H200's 4.8; its large products alone
reach 3.9-4.2 TB/s. Here each warp
owns rows of W and reads them (and x) in 16-byte pieces with several pieces in flight per lane, partial sums
meet in a warp reduction, float32 throughout. (MLX's gemv reads 8 bytes per lane with one load in flight.)

Off by default, because MLX's own gemv is faster. On an H200 (``bench_gemv.py``, many products per evaluation,
``benchmarks/results/h200_run7_gemv.json``) this version takes 1.16x (lm_head) to 2.5x (out_proj) MLX's time, and
the 7B decode with it ran at 80 tok/s against ~110 (its first version, x staged in shared memory with an 8-way
bank conflict, was no better: ``h200_run7_7b_gemv.json``). Kept as the place to fuse a product's neighbours
into (a norm before it, a gate after it) once it streams at MLX's speed. ``benchmarks/bench_gemv.py`` compares
it with MLX's matmul and addmm at the 7B decode shapes in one call, and ``enable()`` (``bench_model.py --gemv``) routes the blocks' one-row products through
it (``matmul(x, weight, bias)``: merged input projections, out_proj, proj_down, lm_head). Like the other
fused kernels it checks itself against ``x @ W.T`` on first use; the CPU suite runs the same text with the warp
reduction emulated (tests/kernels/cpu_emulator.py).
"""
from __future__ import annotations

import math

import mlx.core as mx

from .gpu_kernel import gpu_kernel
from .reference_gradient import with_reference_gradient
from .mlstm.first_use import backend_present, check_once, worst
from .mlstm.tc_chunkwise import LOAD8_CUDA

THREADS = 256  # eight warps, one row each at a time

HEADER = LOAD8_CUDA + r"""
// sum over the 32 lanes of a warp
__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
    for (int o = 16; o > 0; o /= 2) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}
"""

# Grid (ceil(N / 8 / ROWS) threadgroups of 256 threads); warp w of threadgroup g computes rows
# (g * 8 + w) * ROWS .. + ROWS - 1. K is a multiple of 8; lanes take 16-byte pieces 32 apart, UNROLL of them at once,
# of the row and of x alike. x is read from global memory (after the first warp, from L1: a few KB), not staged in
# shared memory: staged as float32 there, lane l's pieces began 8 floats apart, an 8-way bank conflict on every read.
BODY = r"""
    const int tid = TID;
    const int warp = tid / 32;
    const int lane = tid % 32;
    const int N = meta_[0];
    const int K = meta_[1];
    const int pieces = K / 8;
    for (int rr = 0; rr < ROWS; ++rr) {
        const int row = (GX * 8 + warp) * ROWS + rr;
        const bool live = row < N;  // uniform per warp; every warp still meets the reduction
        float acc = 0.0f;
        if (live) {
            const auto* wrow = w_ + (long)row * K;
            for (int p0 = lane; p0 < pieces; p0 += 32 * 4) {
                float a[4][8] = {};
                float xv[4][8] = {};
                UNROLL
                for (int u = 0; u < 4; ++u) {  // four 16-byte pieces of the row (and of x) in flight before any is used
                    const int p = p0 + 32 * u;
                    if (p < pieces) {
                        load8(wrow + 8 * p, a[u]);
                        load8(x_ + 8 * p, xv[u]);
                    }
                }
                UNROLL
                for (int u = 0; u < 4; ++u) {
                    UNROLL
                    for (int e = 0; e < 8; ++e) acc += a[u][e] * xv[u][e];  // zeros past the row's end
                }
            }
        }
        acc = warp_sum(acc);
        if (live && lane == 0) y_[row] = static_cast<T>(HAS_BIAS ? acc + static_cast<float>(b_[row]) : acc);
    }
"""

INPUTS = ["x_", "w_", "b_", "meta_"]
OUTPUTS = ["y_"]
CUDA_IDIOMS = {"UNROLL": "_Pragma(\"unroll\")", "SHARED": "__shared__ __align__(16)", "BARRIER": "__syncthreads()",
               "TID": "int(threadIdx.x)", "GX": "int(blockIdx.x)"}
ROWS = 2  # rows per warp


def _cuda_kernel():
    from .mlstm.fused_chunkwise import source
    return gpu_kernel("cuda", "xlstm_gemv_bf16", INPUTS, OUTPUTS, lambda: source(BODY, CUDA_IDIOMS), header=HEADER)


def make_gemv(make_kernel=None, weight_dtype=mx.bfloat16):
    """``gemv(x, weight, bias=None)`` for x with one row ([K] or [1, ..., K]) and weight [N, K]; other shapes and
    dtypes run ``x @ weight.T``. ``make_kernel()`` may supply the launch (the tests run the text on the CPU, with
    float32 arrays holding bfloat16 values: ``weight_dtype`` float32)."""
    make_kernel = make_kernel or _cuda_kernel

    def gemv(x, weight, bias=None):
        N, K = weight.shape
        if math.prod(x.shape[:-1]) != 1 or weight.dtype != weight_dtype or x.dtype != weight_dtype or K % 8:
            return x @ weight.T if bias is None else mx.addmm(bias, x, weight.T)
        out_dtype = x.dtype
        (y,) = make_kernel()(
            inputs=[x.reshape(K), weight, bias if bias is not None else mx.zeros((1,), weight.dtype),
                    mx.array([N, K], mx.int32)],
            template=[("T", out_dtype), ("ROWS", ROWS), ("HAS_BIAS", int(bias is not None))],
            grid=(THREADS * -(-N // (8 * ROWS)), 1, 1), threadgroup=(THREADS, 1, 1),
            output_shapes=[(N,)], output_dtypes=[out_dtype])
        return y.reshape(*x.shape[:-1], N)

    return gemv


TOLERANCE = 4e-3  # relative to max(1, max |x @ W.T|): outputs rounded to bfloat16 (2^-9), float32 sums in another order
_verified: dict[str, bool] = {}


def check_errors(fn, weight_dtype=mx.bfloat16) -> float:
    """Worst relative error of ``fn`` against ``x @ W.T`` (computed on the CPU) over shapes with partial row groups,
    K not a multiple of the 4 x 32 pieces a warp takes at once, with and without a bias."""
    import numpy as np

    rng = np.random.default_rng(0)
    errs = []
    for N, K, bias in ((37, 8, False), (300, 1032, True), (64, 4096, False)):
        w = mx.array(rng.normal(size=(N, K)).astype(np.float32)).astype(mx.bfloat16)
        x = mx.array(rng.normal(size=(1, K)).astype(np.float32)).astype(mx.bfloat16)
        b = mx.array(rng.normal(size=(N,)).astype(np.float32)).astype(mx.bfloat16) if bias else None
        with mx.stream(mx.cpu):
            want = x.astype(mx.float32) @ w.astype(mx.float32).T + (0 if b is None else b.astype(mx.float32))
            mx.eval(want)
        got = fn(x.astype(mx.float32) if weight_dtype == mx.float32 else x, w.astype(weight_dtype),
                 None if b is None else b.astype(weight_dtype))
        with mx.stream(mx.cpu):
            err = float(mx.abs(got.astype(mx.float32) - want).max()) / max(1.0, float(mx.abs(want).max()))
        errs.append(err)
    return worst(errs)


def self_check(backend: str = "cuda", make_kernel=None, weight_dtype=mx.bfloat16) -> bool:
    fn = make_gemv(make_kernel, weight_dtype)
    return check_once(_verified, backend, "GEMV", lambda: check_errors(fn, weight_dtype), tolerance=TOLERANCE, family="bf16")


def available() -> bool:
    return backend_present("cuda") and self_check("cuda")


_active = {"on": False}


def reference_matmul(x: mx.array, weight: mx.array, bias: mx.array | None = None) -> mx.array:
    """``x @ weight.T (+ bias)`` in MLX ops: what the kernel computes, and where its gradient comes from."""
    return x @ weight.T if bias is None else mx.addmm(bias, x, weight.T)


_gemv = with_reference_gradient(make_gemv(), reference_matmul)


def enable(on: bool = True) -> bool:
    """Route one-row products of bfloat16 weights through the kernel (``matmul``); True if it is now in use, which
    needs CUDA and a passing first-use check (run here, eagerly, not inside a compiled function). Call it before
    the first decoded token: a runner's compiled decode step keeps the products it traced."""
    _active["on"] = bool(on) and available()
    return _active["on"]


def enabled() -> bool:
    return _active["on"]


def matmul(x: mx.array, weight: mx.array, bias: mx.array | None = None) -> mx.array:
    """``x @ weight.T (+ bias)``, through the GEMV kernel when enabled and the shapes apply."""
    if _active["on"]:
        return _gemv(x, weight, bias)
    return reference_matmul(x, weight, bias)
