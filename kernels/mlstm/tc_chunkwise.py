"""mLSTM chunkwise forward for bfloat16 inputs on CUDA tensor cores (``mma.sync`` m16n8k16), in four launches:

1. ``gates``: per token the in-chunk log-forget prefix ``b``, the log weight ``w_end`` in the chunk's exit state and
   the in-chunk stabiliser part ``u``; per chunk the total log forget ``g`` and ``m_loc = max w_end``.
2. ``local``: each chunk's own state contribution ``L_c = k^T (v * exp(w_end - m_loc))``, all chunks in parallel.
3. ``scan``: ``C <- exp(g + m - m') C + exp(m_loc - m') L_c`` with ``m' = max(g + m, m_loc)``, elementwise over the
   state, so memory-bound rather than a chain of dependent products; writes every chunk's entry state (bfloat16).
4. ``outputs``: ``h = (s_in * q C_entry + ((q k^T) * W) v) / denom`` per (chunk, 64 value columns), all in parallel.

The normaliser ``n`` rides along as value column ``DV`` with ``v == 1`` (no separate reduction); the stabiliser
follows the recurrence exactly. Inner-product operands are bfloat16 (the gated ``P`` as a head plus tail), all else
float32. Takes bfloat16 inputs, head dims multiples of ``ROW_MULTIPLE``, at most ``MAX_CHUNKS`` chunks a call (the
entry-state buffer grows with the input). CUDA only: Metal's ``simdgroup_matrix`` fragments have another layout.
"""
from __future__ import annotations

import mlx.core as mx

from ..gpu import Fused, GpuKernel, constant, native_on_cpu, random_normal, relative_error
from .native import mlstm_chunkwise_native
from .tc_chunkwise_source import COMMON, SOURCES

CHUNK = 64  # tokens per chunk (the kernels' tile; the requested chunk size does not change the function)
TILE = 64  # value columns per state slice and per output threadgroup
THREADS = 128  # four warps: each owns 16 rows of a 64-row tile
MAX_CHUNKS = 256  # chunks per call: bounds the chunk-entry state buffer
ROW_MULTIPLE = 8  # key and value rows are read as whole 16-byte pieces

# CUDA helpers for the launch texts; ``bf2`` (two bfloat16 in one register, first in the low half): the mma unit.
HEADER_CUDA = r"""
typedef unsigned bf2;
__device__ __forceinline__ bf2 pack2(float lo, float hi) {
    __nv_bfloat162 r = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<bf2*>(&r);
}
__device__ __forceinline__ void st_pair(__nv_bfloat16* p, float a, float b) {
    *reinterpret_cast<bf2*>(p) = pack2(a, b);
}
__device__ __forceinline__ float bf16_round(float x) { return __bfloat162float(__float2bfloat16_rn(x)); }
// (a, b) = hi + lo, each a bfloat16 pair: a product with hi and lo keeps 16 significant bits of a and b
__device__ __forceinline__ void split2(float a, float b, bf2& hi, bf2& lo) {
    __nv_bfloat162 h = __floats2bfloat162_rn(a, b);
    const float2 hf = __bfloat1622float2(h);
    hi = *reinterpret_cast<bf2*>(&h);
    lo = pack2(a - hf.x, b - hf.y);
}
// 8 elements kept in registers between a global load and their use (the scan loads the next chunk's while it steps)
typedef uint4 row8;
__device__ __forceinline__ row8 ld_row8(const __nv_bfloat16* p) { return *reinterpret_cast<const uint4*>(p); }
__device__ __forceinline__ void unpack8(const row8& u, float* x) {
    const unsigned w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
    for (int r = 0; r < 4; ++r) {
        const float2 f = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&w[r]));
        x[2 * r] = f.x;
        x[2 * r + 1] = f.y;
    }
}
__device__ __forceinline__ void st_row8(__nv_bfloat16* p, const float* x) {
    *reinterpret_cast<uint4*>(p) = make_uint4(pack2(x[0], x[1]), pack2(x[2], x[3]), pack2(x[4], x[5]),
                                              pack2(x[6], x[7]));
}
// 16 bytes from global to shared memory without passing through registers (zeros when !valid); completes at
// cp_async_wait<N>() (all but the N most recent committed groups)
__device__ __forceinline__ void cp_async8(bf2* dst, const __nv_bfloat16* src, bool valid) {
    const unsigned d = static_cast<unsigned>(__cvta_generic_to_shared(dst));
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" :: "r"(d), "l"(src), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" :: "n"(N)); }
// D += A B over one 16 x 8 x 16 tile (fragments as in the PTX ISA's m16n8k16 layout)
__device__ __forceinline__ void mma_bf16(float* d, const bf2* a, const bf2* b) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
// sum over the four lanes that hold one row of an mma accumulator
__device__ __forceinline__ float quad_sum(float x) {
    x += __shfl_xor_sync(0xffffffffu, x, 1);
    return x + __shfl_xor_sync(0xffffffffu, x, 2);
}
"""

HEADER = HEADER_CUDA + "#define XL_FN __device__ __forceinline__\n" + COMMON
KERNELS = {which: GpuKernel(f"xlstm_mlstm_tc_{which}", body, tuple(ins), tuple(outs), HEADER)
           for which, (body, ins, outs) in SOURCES.items()}


def _make(backend: str = "cuda", kernels=None, io_dtype=mx.bfloat16, entry_dtype=mx.bfloat16):
    """The four-launch kernel; tests pass ``kernels`` (launch name -> kernel) and float32 dtypes to run the same
    texts on the CPU."""
    def launch(which: str):
        return kernels[which] if kernels is not None else KERNELS[which].compiled(backend)

    def chunkwise(q, k, v, i, f, state=None, *, chunk_size=64, eps=1e-6, mask=None):
        B, NH, S, DK = q.shape
        DV = v.shape[-1]
        if int(chunk_size) < 1:
            raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
        if not (q.dtype == k.dtype == v.dtype == io_dtype and DK % ROW_MULTIPLE == 0 and DV % ROW_MULTIPLE == 0):
            raise ValueError(f"the tensor-core chunkwise kernel takes {io_dtype} q, k, v with head dims that are "
                             f"multiples of {ROW_MULTIPLE}, got {q.dtype}/{k.dtype}/{v.dtype}, DK {DK}, DV {DV}")
        if state is not None:
            state = tuple(a.astype(mx.float32) for a in state)
        if S == 0:
            zeros = (mx.zeros((B, NH, DK, DV)), mx.zeros((B, NH, DK)), mx.zeros((B, NH)))
            return mx.zeros((B, NH, 0, DV), v.dtype), state if state is not None else zeros
        BH, NC = B * NH, -(-S // CHUNK)
        # reshaped once: k and v feed two launches, and each reshape of a projection's view copies it
        k, v = k.reshape(BH, S, DK), v.reshape(BH, S, DV)
        meta = constant((S, NC, DK, DV, NH), mx.int32)
        keep = constant((0.0,), mx.float32) if mask is None else mask.astype(mx.float32)
        b, ig, wend, u, gm = launch("gates")(
            inputs=[i.reshape(BH, S), f.reshape(BH, S), keep, meta], template=[("HAS_MASK", int(mask is not None))],
            grid=(CHUNK * NC, BH, 1), threadgroup=(CHUNK, 1, 1),
            output_shapes=[(BH, NC * CHUNK)] * 4 + [(BH, NC, 2)], output_dtypes=[mx.float32] * 5)
        (LT,) = launch("local")(
            inputs=[k, v, wend, gm, meta], template=[("T", io_dtype)],
            grid=(THREADS * -(-(DV + 1) // TILE), NC * -(-DK // TILE), BH), threadgroup=(THREADS, 1, 1),
            output_shapes=[(BH, NC, DV + 1, DK)], output_dtypes=[entry_dtype])
        has_state = state is not None
        C0, n0, m0 = state if has_state else (constant((0.0,), mx.float32),) * 3
        CT, mE, C, n, m = launch("scan")(
            inputs=[LT, gm, C0, n0, m0, meta], template=[("HAS_STATE", int(has_state))],
            grid=(THREADS * -(-((DV + 1) * DK // 8) // THREADS), BH, 1), threadgroup=(THREADS, 1, 1),
            output_shapes=[(BH, NC, DV + 1, DK), (BH, NC), (B, NH, DK, DV), (B, NH, DK), (B, NH)],
            output_dtypes=[entry_dtype, mx.float32, mx.float32, mx.float32, mx.float32])
        (h,) = launch("outputs")(
            inputs=[q.reshape(BH, S, DK), k, v, b, ig, u, CT, mE, meta, constant((float(eps),), mx.float32)],
            template=[("T", io_dtype)], grid=(THREADS * -(-DV // TILE), NC, BH), threadgroup=(THREADS, 1, 1),
            output_shapes=[(B, NH, S, DV)], output_dtypes=[io_dtype])
        if mask is not None:
            h = mx.where(mask.astype(mx.bool_)[:, None, :, None], h, mx.zeros((), h.dtype))
        return h, (C, n, m)

    chunkwise.__doc__ = (f"bfloat16 chunkwise forward on CUDA tensor cores (gates, local states, scan, outputs: four "
                         f"launches, chunks of {CHUNK} tokens).")
    return chunkwise


def check_errors(fn, dtype=mx.bfloat16) -> float:
    """Worst relative error of ``fn`` (given ``dtype`` q, k, v, i, f) against the native kernel on the CPU: partial
    tiles, padding, mask, state."""
    bf, got, want = random_normal(mx.bfloat16), [], []
    for B, NH, S, DK, DV in ((2, 2, 37, 48, 40), (1, 1, 200, 64, 64), (1, 2, 130, 72, 136)):
        x = (bf(B, NH, S, DK), bf(B, NH, S, DK), bf(B, NH, S, DV), bf(B, NH, S, scale=3.0),
             bf(B, NH, S, scale=3.0, shift=2.0))
        state = tuple(bf(*shape).astype(mx.float32) for shape in ((B, NH, DK, DV), (B, NH, DK), (B, NH)))
        mask = bf(B, S) > -0.84  # about a fifth of the tokens masked
        for st, mk in ((None, None), (state, mask)):
            got.append(fn(*(a.astype(dtype) for a in x), st, chunk_size=64, mask=mk))
            want.append(native_on_cpu(mlstm_chunkwise_native, *(a.astype(mx.float32) for a in x), st, chunk_size=64,
                                      mask=mk))
    return relative_error(got, want)


# First-use bound relative to max(1, max |native|): bfloat16 operands (2^-9) and outputs divided by small
# normalisers; a wrong index or weight errs by order 1.
FUSED = Fused("mLSTM chunkwise (bf16 tensor cores)", _make, check_errors, tolerance=3e-2)
FUSED.register("mlstm", "chunkwise", "tc_chunkwise",
               "bf16 tensor-core chunkwise forward (gates, local states, scan, outputs; bf16 operands, f32 sums)",
               backends=("cuda",), dtypes=frozenset({"bfloat16"}), head_dim_multiple=ROW_MULTIPLE,
               max_chunks=MAX_CHUNKS, chunk=CHUNK, math_dtype="bfloat16", priority=8,
               reference=mlstm_chunkwise_native)
