"""mLSTM chunkwise forward for bfloat16 inputs on CUDA tensor cores: four launches, no MLX preparation.

1. ``gates``: per token, the in-chunk prefix ``b`` of log forget gates, the log weight ``w_end`` of the token
   in the state leaving its chunk, the intra-chunk part ``u`` of the stabiliser; per chunk, the total log
   forget ``g`` and ``m_loc = max w_end`` (logsigmoid, masks and the padded tail applied here).
2. ``local``: every chunk's own contribution ``L_c = k^T (v * exp(w_end - m_loc))``, all chunks in parallel,
   one threadgroup per (batch·head, chunk, 64 x 64 tile of the state), on ``mma.sync`` m16n8k16 bf16.
3. ``scan``: the recurrence across chunks, elementwise over the state, ``C <- exp(g + m - m') C + exp(m_loc - m') L_c``
   with ``m' = max(g + m, m_loc)``, writing the state entering each chunk (bfloat16) and the exit state (float32).
   Its loads do not depend on the chain, so it runs at memory speed. (A first version walked the chunks in one
   sequential launch of tensor-core products, carrying the state in accumulators: ~5 us per chunk on an H200,
   the latency of each step's loads, 1.3 ms at 16k tokens.)
4. ``outputs``: one threadgroup per (batch·head, chunk, 64 value columns) forms
   ``h = (s_in * q C_entry + ((q k^T) * W) v) / denom`` with the same instruction, all chunks in parallel.

The normaliser ``n`` rides along as value column ``DV`` with ``v == 1`` (then ``C[:, DV] = n``, and the
output's column ``DV`` is exactly ``q·n``-plus-intra-chunk-sum, the denominator), so no launch needs a
separate reduction. The stabiliser follows the recurrence exactly (``m_t = max(log f_t + m_{t-1}, i_t)``),
so the ``exp(-m)`` floor of the denominator means what it means in the official kernels.

Precision: like the official kernels on bfloat16 inputs, the operands of every inner product are bfloat16
(``q``, ``k``, ``v`` exactly as given; ``v * ew`` and the chunk-entry states rounded to it; the gated ``P`` as a
bfloat16 head plus tail, since its rounding was the largest error) and
every accumulation float32; gates, stabilisers and the carried state are float32. Hence bfloat16 inputs only
(float32 inputs keep the float32 kernels), checked on first use against the native kernel at a bfloat16 bound.

The algorithm is written against a few helpers (``pack2``, ``mma_bf16``, ``quad_sum``, ...) so the tests run
the same text on the CPU (tests/kernels/cpu_emulator.py emulates the warp-level helpers). CUDA only: a Metal
version would supply ``simdgroup_matrix`` products for ``mma_bf16``, whose 8x8 fragments have another layout.
"""
from __future__ import annotations

import mlx.core as mx

from ..gpu_kernel import constant, gpu_kernel
from ..registry import KernelInfo, register_kernel
from .first_use import backend_present, check_once, native_on_cpu, relative_error, worst
from .native import mlstm_chunkwise_native

CHUNK = 64  # tokens per chunk (the kernels' tile; the requested chunk size does not change the function)
TILE = 64  # value columns per state slice and per output threadgroup
THREADS = 128  # four warps: each owns 16 rows of a 64-row tile
# How launch 2 is arranged: "tile" (a threadgroup per chunk x 64 x 64 state tile) or "chunk" (a threadgroup per
# chunk walking the value columns). One H200 call (profile_tc_chunkwise.py, whole forward, tile / chunk): 0.181 /
# 0.165 ms at 1k tokens, 0.473 / 0.510 at 4k, 1.69 / 1.83 at 16k (benchmarks/results/h200_run7_profile_tc.json):
# "tile" stays the default; "chunk" is kept for short prompts and for GPUs with fewer SMs, where it may win.
LOCAL_LAUNCH = "tile"
SEGMENT_CHUNKS = 256  # chunks per set of launches: bounds the chunk-entry state buffer (16k tokens: 0.5 GB at 7B heads)

# 8 consecutive bfloat16 (16 bytes, aligned) as floats (also used by kernels/gemv.py)
LOAD8_CUDA = r"""
__device__ __forceinline__ void load8(const __nv_bfloat16* p, float* x) {
    const uint4 u = *reinterpret_cast<const uint4*>(p);
    const unsigned w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
    for (int r = 0; r < 4; ++r) {
        const float2 f = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&w[r]));
        x[2 * r] = f.x;
        x[2 * r + 1] = f.y;
    }
}
"""

# Helpers in the common subset of CUDA and the CPU emulator's C++, on top of each one's pack2 / load8 (XL_FN is
# ``__device__ __forceinline__`` or ``static inline``).
COMMON = r"""
// Where (row, pair) of a transposed tile lives: rows of 36 pairs, the pair index XOR-ed with the row's 8-row block, so
// that both the transposing stores (8 rows 8 apart, 4 token pairs) and the fragment reads (8 consecutive rows, 4 pairs)
// hit 32 different banks
XL_FN int swz(int row, int word) { return row * 36 + (word ^ (((row >> 3) & 7) << 2)); }
// Rows ta, tb (a token pair) of a row-major [S, W] array (W a multiple of 8), columns col .. col + 7, times ea / eb,
// into a transposed tile at swz(8 o + e, p): zeros past S or W, and one at column `ones` (the normaliser: v == 1).
template <typename P>
XL_FN void stage_pair(bf2* tile, int o, int p, const P* rows, long ta, long tb, int S, int W, int col, int ones,
                      float ea, float eb) {
    float xa[8] = {};
    float xb[8] = {};
    if (col + 8 <= W) {
        if (ta < S) load8(rows + ta * W + col, xa);
        if (tb < S) load8(rows + tb * W + col, xb);
    } else if (col == ones) {
        xa[0] = 1.0f;
        xb[0] = 1.0f;
    }
    for (int e = 0; e < 8; ++e) tile[swz(8 * o + e, p)] = pack2(xa[e] * ea, xb[e] * eb);
}
"""

# CUDA versions of the helpers the algorithm is written against. ``bf2`` is a pair of bfloat16 in one register
# (the first element in the low half): the unit of every mma fragment.
HEADER_CUDA = r"""
typedef unsigned bf2;
__device__ __forceinline__ bf2 pack2(float lo, float hi) {
    __nv_bfloat162 r = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<bf2*>(&r);
}
__device__ __forceinline__ void st_pair(__nv_bfloat16* p, float a, float b) { *reinterpret_cast<bf2*>(p) = pack2(a, b); }
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
    *reinterpret_cast<uint4*>(p) = make_uint4(pack2(x[0], x[1]), pack2(x[2], x[3]), pack2(x[4], x[5]), pack2(x[6], x[7]));
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
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
// sum over the four lanes that hold one row of an mma accumulator
__device__ __forceinline__ float quad_sum(float x) {
    x += __shfl_xor_sync(0xffffffffu, x, 1);
    return x + __shfl_xor_sync(0xffffffffu, x, 2);
}
"""
HEADER = HEADER_CUDA + LOAD8_CUDA + "#define XL_FN __device__ __forceinline__\n" + COMMON


# Launch 1. Grid (NC, BH), 64 threads: one per token of the chunk.
GATES = r"""
    const int t = TID;
    const int c = GX;
    const int bh = GY;
    const int S = meta_[0];
    const int NC = meta_[1];
    const int NH = meta_[4];
    const long tok = (long)c * 64 + t;
    const long row = (long)bh * NC * 64 + tok;  // this token in the [BH, NC * 64] outputs
    SHARED float lf[64];
    SHARED float ig[64];
    SHARED float bb[64];
    SHARED float we[64];
    const bool valid = tok < S && (HAS_MASK == 0 || keep_[(long)(bh / NH) * S + (tok < S ? tok : 0)] > 0.5f);
    const float f_raw = valid ? static_cast<float>(f_[(long)bh * S + tok]) : 0.0f;
    lf[t] = valid ? fmin(f_raw, 0.0f) - log1p(exp(-fabs(f_raw))) : 0.0f;  // logsigmoid; 0 = keep the state
    ig[t] = valid ? static_cast<float>(i_[(long)bh * S + tok]) : -1e30f;   // -1e30 = add nothing
    BARRIER;
    float b = 0.0f;
    float suffix = 0.0f;
    UNROLL
    for (int r = 0; r < 64; ++r) b += r <= t ? lf[r] : 0.0f;
    UNROLL
    for (int r = 63; r >= 0; --r) suffix += r > t ? lf[r] : 0.0f;
    bb[t] = b;
    const float w_end = suffix + ig[t];
    we[t] = w_end;
    BARRIER;
    float best = -3e38f;  // max over s <= t of (i_s - b_s): the in-chunk part of the stabiliser
    UNROLL
    for (int r = 0; r < 64; ++r) best = r <= t ? fmax(best, ig[r] - bb[r]) : best;
    b_[row] = b;
    igo_[row] = ig[t];
    wend_[row] = w_end;
    u_[row] = b + best;
    if (t == 0) {
        float ml = -3e38f;
        for (int r = 0; r < 64; ++r) ml = fmax(ml, we[r]);
        gm_[((long)bh * NC + c) * 2] = bb[63];
        gm_[((long)bh * NC + c) * 2 + 1] = ml;
    }
"""

# What every mma launch starts with: the thread's warp, its place in an mma fragment (gid, tig), the shapes.
_WARP_INDEX = r"""
    const int tid = TID;
    const int warp = tid / 32;
    const int lane = tid % 32;
    const int gid = lane / 4;
    const int tig = lane % 4;
    const int S = meta_[0];
    const int NC = meta_[1];
    const int DK = meta_[2];
    const int DV = meta_[3];
    const int DVn = DV + 1;
"""

# Launch 2. Grid (ceil((DV + 1) / 64), NC * ceil(DK / 64), BH) threadgroups of 128 threads: every chunk's own
# contribution to the state, all chunks in parallel, stabilised by the chunk's own max m_loc:
# L_c = k^T (v * exp(w_end - m_loc)), kept transposed (L^T[j][d], value column DV = the normaliser, v == 1).
# Warp w owns rows j0 + 16 w .. + 15; the mma's k dimension is the chunk's tokens, so v * ew and k are staged
# transposed ([column][token pair]). When DV is a multiple of 64 the last column of threadgroups holds the
# normaliser alone: one row, summed directly (n_c[d] = sum_t bf16(ew_t) k_t[d], the tensor-core path's rounding)
# instead of a 64-row product that is 63/64 zeros (at DV 512 that was 1/9 of the launch's work; the H200's 4k
# kernel time stayed within its call-to-call noise: benchmarks/results/h200_run10a_kernel.json vs
# h200_run10_kernel.json).
LOCAL = _WARP_INDEX + r"""
    const int NDT = (DK + 63) / 64;
    const int j0 = GX * 64;
    const int c = GY / NDT;
    const int d0 = (GY % NDT) * 64;
    const int bh = GZ;
    const long tok0 = (long)c * 64;
    const float mloc = gm_[((long)bh * NC + c) * 2 + 1];
    if (j0 == DV) {  // uniform over the threadgroup: the normaliser row alone
        SHARED float part[4][64];  // [16-token quarter][key dim]
        const int pr = tid % 32;   // key dims d0 + 2 pr, + 1
        const int qt = tid / 32;   // tokens 16 qt .. + 15 of the chunk
        const int d = d0 + 2 * pr;
        float s0 = 0.0f;
        float s1 = 0.0f;
        UNROLL
        for (int t = 16 * qt; t < 16 * qt + 16; ++t) {
            const long tok = tok0 + t;
            if (tok < S && d < DK) {
                const float e = bf16_round(exp(wend_[(long)bh * NC * 64 + tok] - mloc));  // 0: masked, padded
                s0 += e * static_cast<float>(k_[((long)bh * S + tok) * DK + d]);
                s1 += e * static_cast<float>(k_[((long)bh * S + tok) * DK + d + 1]);
            }
        }
        part[qt][2 * pr] = s0;
        part[qt][2 * pr + 1] = s1;
        BARRIER;
        if (tid < 32 && d < DK)
            st_pair(LT_ + (((long)bh * NC + c) * DVn + DV) * DK + d,
                    (part[0][2 * pr] + part[1][2 * pr]) + (part[2][2 * pr] + part[3][2 * pr]),
                    (part[0][2 * pr + 1] + part[1][2 * pr + 1]) + (part[2][2 * pr + 1] + part[3][2 * pr + 1]));
    } else {
        constexpr int RS = 36;  // row stride in pairs (see swz)
        SHARED bf2 vT[64 * RS];  // [value column][token pair]: v * ew, at swz(column, pair)
        SHARED bf2 kT[64 * RS];  // [key dim][token pair], at swz(dim, pair)
        UNROLL
        for (int r = 0; r < 2; ++r) {  // unit = (token pair p, 8 columns o), two per thread; 8 threads read a row's 128 bytes
            const int u = tid + 128 * r;
            const int o = u % 8;
            const int p = u / 8;
            const long ta = tok0 + 2 * p;
            const long tb = ta + 1;
            const float ea = exp(wend_[(long)bh * NC * 64 + ta] - mloc);  // 0 for masked and padded tokens
            const float eb = exp(wend_[(long)bh * NC * 64 + tb] - mloc);
            stage_pair(vT, o, p, v_ + (long)bh * S * DV, ta, tb, S, DV, j0 + 8 * o, DV, ea, eb);
            stage_pair(kT, o, p, k_ + (long)bh * S * DK, ta, tb, S, DK, d0 + 8 * o, -1, 1.0f, 1.0f);
        }
        BARRIER;
        float acc[8][4] = {};
        UNROLL
        for (int kk = 0; kk < 4; ++kk) {
            const int ra = 16 * warp + gid;
            const int w = 8 * kk + tig;
            const bf2 a[4] = {vT[swz(ra, w)], vT[swz(ra + 8, w)], vT[swz(ra, w + 4)], vT[swz(ra + 8, w + 4)]};
            UNROLL
            for (int nt = 0; nt < 8; ++nt) {
                const bf2 b[2] = {kT[swz(8 * nt + gid, w)], kT[swz(8 * nt + gid, w + 4)]};
                mma_bf16(acc[nt], a, b);
            }
        }
        UNROLL
        for (int nt = 0; nt < 8; ++nt) {
            UNROLL
            for (int e = 0; e < 4; e += 2) {
                const int j = j0 + 16 * warp + gid + (e < 2 ? 0 : 8);
                const int d = d0 + 8 * nt + 2 * tig;
                if (j < DVn && d < DK) st_pair(LT_ + (((long)bh * NC + c) * DVn + j) * DK + d, acc[nt][e], acc[nt][e + 1]);
            }
        }
    }
"""

# Launch 2, the other arrangement (LOCAL_LAUNCH = "chunk"): one threadgroup of 256 threads per (batch·head, chunk)
# stages the chunk's k once (all DK <= 256 key dims, transposed) and walks the value columns (DV + 1) in pieces of
# 64: each of the 8 warps computes 16 value rows x half the key dims of the piece. k is read once per chunk instead
# of once per value tile, v once instead of once per key tile, and there are NC * BH threadgroups instead of 36x that.
LOCAL_CHUNK = _WARP_INDEX + r"""
    const int c = GX;
    const int bh = GY;
    const long tok0 = (long)c * 64;
    const int half = ((DK + 7) / 8 + 1) / 2;  // 8-wide key-dim tiles: each warp stores one half (<= 16)
    const int nt0 = (warp / 4) * half;
    const int mrow = 16 * (warp % 4);      // this warp's 16 value rows of a piece
    SHARED bf2 kT[256 * 36];  // [key dim][token pair] at swz(dim, pair)
    SHARED bf2 vT[64 * 36];   // [value column of the piece][token pair] at swz(column, pair): v * ew
    SHARED float ew[64];
    const float mloc = gm_[((long)bh * NC + c) * 2 + 1];
    if (tid < 64) ew[tid] = exp(wend_[(long)bh * NC * 64 + tok0 + tid] - mloc);  // 0 for masked and padded tokens
    for (int r = 0; r < 4; ++r) {  // unit = (token pair p, 8 key dims o): 8 threads read 128 bytes of a row
        const int u = tid + 256 * r;
        const int o = u % 8 + 8 * (u / 256);
        const int p = (u / 8) % 32;
        const long ta = tok0 + 2 * p;
        stage_pair(kT, o, p, k_ + (long)bh * S * DK, ta, ta + 1, S, DK, 8 * o, -1, 1.0f, 1.0f);
    }
    for (int j0 = 0; j0 < DVn; j0 += 64) {
        BARRIER;  // k and ew staged; the previous piece's readers are done
        {
            const int o = tid % 8;
            const int p = tid / 8;
            const long ta = tok0 + 2 * p;
            stage_pair(vT, o, p, v_ + (long)bh * S * DV, ta, ta + 1, S, DV, j0 + 8 * o, DV, ew[2 * p], ew[2 * p + 1]);
        }
        BARRIER;
        float acc[16][4] = {};
        NOUNROLL  // unrolled, the 4 x 16 fragment loads took 255 registers and spilled
        for (int kk = 0; kk < 4; ++kk) {
            const int w = 8 * kk + tig;
            const int ra = mrow + gid;
            const bf2 a[4] = {vT[swz(ra, w)], vT[swz(ra + 8, w)], vT[swz(ra, w + 4)], vT[swz(ra + 8, w + 4)]};
            UNROLL
            for (int nt = 0; nt < 16; ++nt) {  // every warp every tile (uniform control flow around the mma): rows
                const int rb = 8 * (nt0 + nt) + gid;  // past DK hold zeros, tiles past this warp's half are not stored
                const bf2 b[2] = {kT[swz(rb, w)], kT[swz(rb, w + 4)]};
                mma_bf16(acc[nt], a, b);
            }
        }
        UNROLL
        for (int nt = 0; nt < 16; ++nt) {
            UNROLL
            for (int e = 0; e < 4; e += 2) {
                const int j = j0 + mrow + gid + (e < 2 ? 0 : 8);
                const int d = 8 * (nt0 + nt) + 2 * tig;
                if (nt < half && j < DVn && d < DK)
                    st_pair(LT_ + (((long)bh * NC + c) * DVn + j) * DK + d, acc[nt][e], acc[nt][e + 1]);
            }
        }
    }
"""

# Launch 3. Grid (ceil((DV + 1) * DK / 8 / 128), BH) threadgroups of 128 threads, 8 consecutive state entries per
# thread: the recurrence across chunks, C_{c+1} = exp(g + m - m') C_c + exp(m_loc - m') L_c with
# m' = max(g + m, m_loc), writing the state entering each chunk. Elementwise and independent of the loads it
# waits on, so it runs at memory speed instead of a chain of dependent launches' latencies.
SCAN = r"""
    const int S = meta_[0];
    const int NC = meta_[1];
    const int DK = meta_[2];
    const int DV = meta_[3];
    const int DVn = DV + 1;
    const int bh = GY;
    const long e8 = ((long)GX * 128 + TID) * 8;  // the first of this thread's entries of the [DVn, DK] slice
    if (e8 < (long)DVn * DK) {
        const int j = (int)(e8 / DK);
        const int d = (int)(e8 % DK);
        float C[8];
        UNROLL
        for (int e = 0; e < 8; ++e) {
            float x = 0.0f;
            if (HAS_STATE) x = j < DV ? C0_[((long)bh * DK + d + e) * DV + j] : n0_[(long)bh * DK + d + e];
            C[e] = x;
        }
        float m = HAS_STATE ? m0_[bh] : 0.0f;
        const long slice = (long)DVn * DK;
        row8 next = ld_row8(LT_ + (long)bh * NC * slice + e8);
        for (int c = 0; c < NC; ++c) {
            const row8 cur = next;
            if (c + 1 < NC) next = ld_row8(LT_ + ((long)bh * NC + c + 1) * slice + e8);
            st_row8(CT_ + ((long)bh * NC + c) * slice + e8, C);
            if (e8 == 0) mE_[(long)bh * NC + c] = m;
            const float g = gm_[((long)bh * NC + c) * 2];
            const float ml = gm_[((long)bh * NC + c) * 2 + 1];
            const float m_next = fmax(g + m, ml);
            const float a = exp(g + m - m_next);
            const float b = exp(ml - m_next);
            float x[8];
            unpack8(cur, x);
            UNROLL
            for (int e = 0; e < 8; ++e) C[e] = a * C[e] + b * x[e];
            m = m_next;
        }
        UNROLL
        for (int e = 0; e < 8; ++e) {
            if (j < DV) Cout_[((long)bh * DK + d + e) * DV + j] = C[e];
            else nout_[(long)bh * DK + d + e] = C[e];
        }
        if (e8 == 0) mout_[bh] = m;
    }
"""

# Launch 4. Grid (ceil(DV / 64), NC, BH) threadgroups of 128 threads; warp w computes tokens 16 w .. 16 w + 15 of
# the chunk for value columns j0 .. j0 + 63, plus an extra 8-column tile whose column 0 is the normaliser column
# DV (entry state row DV = n, and v == 1 there): its result is the denominator's q·n + sum of P. The key dims
# come in pieces of 32, copied asynchronously into two buffers (the next piece lands while this one computes).
OUTPUTS = _WARP_INDEX + r"""
    const int j0 = GX * 64;
    const int c = GY;
    const int bh = GZ;
    const long tok0 = (long)c * 64;
    const long grow = (long)bh * NC * 64 + tok0;  // the chunk's first token in the gate arrays
    constexpr int RS = 36;  // pairs per row of the transposed v (see swz)
    constexpr int PS = 20;  // pairs per row of a key-dim piece: 16 + 4 (conflict-free fragment reads, 16-byte rows)
    SHARED bf2 qS[2 * 64 * PS];  // [buffer][token][key-dim pair]
    SHARED bf2 kS[2 * 64 * PS];  // [buffer][token][key-dim pair]
    SHARED bf2 cS[2 * 72 * PS];  // [buffer][value column][key-dim pair]: the entry state, tile + normaliser tile
    SHARED bf2 vT[72 * RS];      // [value column][token pair] at swz(column, pair): tile + ones in row 64
    SHARED float gb[64];
    SHARED float gi[64];
    const long cbase = ((long)bh * NC + c) * DVn;  // the chunk's entry state, row 0
    auto issue = [&](int piece) {  // start copying key dims 32 piece .. + 31 of q, k and the entry state
        const int buf = piece & 1;
        for (int e = tid; e < 64 * 4; e += 128) {
            const int rr = e / 4;
            const int dd = 32 * piece + 8 * (e % 4);
            const long t = tok0 + rr;
            const bool ok = t < S && dd < DK;
            cp_async8(qS + (buf * 64 + rr) * PS + 4 * (e % 4), ok ? q_ + ((long)bh * S + t) * DK + dd : q_, ok);
            cp_async8(kS + (buf * 64 + rr) * PS + 4 * (e % 4), ok ? k_ + ((long)bh * S + t) * DK + dd : k_, ok);
        }
        for (int e = tid; e < 72 * 4; e += 128) {
            const int rr = e / 4;
            const int dd = 32 * piece + 8 * (e % 4);
            const int j = rr < 64 ? j0 + rr : DV + (rr - 64);
            const bool ok = (rr < 64 ? j < DV : j < DVn) && dd < DK;
            cp_async8(cS + (buf * 72 + rr) * PS + 4 * (e % 4), ok ? CT_ + (cbase + j) * DK + dd : CT_, ok);
        }
        cp_async_commit();
    };
    const int NP = (DK + 31) / 32;
    issue(0);
    // meanwhile: v transposed (no weights), ones for the normaliser column, gates
    UNROLL
    for (int r = 0; r < 2; ++r) {
        const int u = tid + 128 * r;
        const int o = u % 8;
        const int p = u / 8;
        const long ta = tok0 + 2 * p;
        stage_pair(vT, o, p, v_ + (long)bh * S * DV, ta, ta + 1, S, DV, j0 + 8 * o, -1, 1.0f, 1.0f);
    }
    for (int e = tid; e < 8 * 32; e += 128) vT[swz(64 + e / 32, e % 32)] = pack2(e < 32 ? 1.0f : 0.0f, e < 32 ? 1.0f : 0.0f);
    if (tid < 64) {
        gb[tid] = b_[grow + tid];
        gi[tid] = ig_[grow + tid];
    }
    float sacc[8][4] = {};  // q k^T
    float acc[9][4] = {};   // q C_entry, then + P v; tile 8 = the normaliser column
    for (int piece = 0; piece < NP; ++piece) {
        if (piece + 1 < NP) {
            issue(piece + 1);
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        BARRIER;  // this piece has landed for every thread
        const int buf = piece & 1;
        UNROLL
        for (int kk = 0; kk < 2; ++kk) {
            const int ra = (buf * 64 + 16 * warp + gid) * PS + 8 * kk + tig;
            const bf2 a[4] = {qS[ra], qS[ra + 8 * PS], qS[ra + 4], qS[ra + 8 * PS + 4]};
            UNROLL
            for (int nt = 0; nt < 8; ++nt) {
                const int rb = (buf * 64 + 8 * nt + gid) * PS + 8 * kk + tig;
                const bf2 b[2] = {kS[rb], kS[rb + 4]};
                mma_bf16(sacc[nt], a, b);
            }
            UNROLL
            for (int nt = 0; nt < 9; ++nt) {
                const int rb = (buf * 72 + 8 * nt + gid) * PS + 8 * kk + tig;
                const bf2 b[2] = {cS[rb], cS[rb + 4]};
                mma_bf16(acc[nt], a, b);
            }
        }
        BARRIER;  // its readers are done before the buffer is refilled
    }
    // gates of the two rows this lane holds
    const float scale = rsqrt(static_cast<float>(DK));
    const float m_c = mE_[(long)bh * NC + c];
    const int ta = 16 * warp + gid;
    const int tb = ta + 8;
    const float ba = gb[ta];
    const float bbv = gb[tb];
    const float mta = fmax(ba + m_c, u_[grow + ta]);
    const float mtb = fmax(bbv + m_c, u_[grow + tb]);
    const float sa = exp(ba + m_c - mta) * scale;
    const float sb = exp(bbv + m_c - mtb) * scale;
    UNROLL
    for (int nt = 0; nt < 9; ++nt) {
        acc[nt][0] *= sa;
        acc[nt][1] *= sa;
        acc[nt][2] *= sb;
        acc[nt][3] *= sb;
    }
    // P = (q k^T) * scale * exp(b_t - b_s + i_s - m_t) for s <= t, as the A fragments of P v: split into a bfloat16
    // head and tail (P is formed here in float32, and its rounding alone would cost 8 bits of every output; v is exact)
    bf2 ph[4][4];
    bf2 pl[4][4];
    UNROLL
    for (int nt = 0; nt < 8; ++nt) {
        float w[4];
        UNROLL
        for (int e = 0; e < 4; ++e) {
            const int s = 8 * nt + 2 * tig + (e & 1);
            const int t = e < 2 ? ta : tb;
            const float bt = e < 2 ? ba : bbv;
            const float mt = e < 2 ? mta : mtb;
            w[e] = s <= t ? sacc[nt][e] * scale * exp(bt - gb[s] + gi[s] - mt) : 0.0f;
        }
        split2(w[0], w[1], ph[nt / 2][(nt % 2) * 2], pl[nt / 2][(nt % 2) * 2]);
        split2(w[2], w[3], ph[nt / 2][(nt % 2) * 2 + 1], pl[nt / 2][(nt % 2) * 2 + 1]);
    }
    UNROLL
    for (int kk = 0; kk < 4; ++kk) {
        UNROLL
        for (int nt = 0; nt < 9; ++nt) {
            const bf2 b[2] = {vT[swz(8 * nt + gid, 8 * kk + tig)], vT[swz(8 * nt + gid, 8 * kk + tig + 4)]};
            mma_bf16(acc[nt], ph[kk], b);
            mma_bf16(acc[nt], pl[kk], b);
        }
    }
    // the normaliser tile has one non-zero column (DV): its row sums over the quad are q·n + sum of P
    const float qna = quad_sum(acc[8][0] + acc[8][1]);
    const float qnb = quad_sum(acc[8][2] + acc[8][3]);
    const float eps = eps_[0];
    const float ra_ = 1.0f / (fmax(fabs(qna), exp(fmin(-mta, 80.0f))) + eps);
    const float rb_ = 1.0f / (fmax(fabs(qnb), exp(fmin(-mtb, 80.0f))) + eps);
    UNROLL
    for (int nt = 0; nt < 8; ++nt) {
        const int j = j0 + 8 * nt + 2 * tig;
        if (j < DV) {
            if (tok0 + ta < S) st_pair(h_ + ((long)bh * S + tok0 + ta) * DV + j, acc[nt][0] * ra_, acc[nt][1] * ra_);
            if (tok0 + tb < S) st_pair(h_ + ((long)bh * S + tok0 + tb) * DV + j, acc[nt][2] * rb_, acc[nt][3] * rb_);
        }
    }
"""

SOURCES = {  # name -> (algorithm text, input names, output names)
    "gates": (GATES, ["i_", "f_", "keep_", "meta_"], ["b_", "igo_", "wend_", "u_", "gm_"]),
    "local": (LOCAL, ["k_", "v_", "wend_", "gm_", "meta_"], ["LT_"]),
    "local_chunk": (LOCAL_CHUNK, ["k_", "v_", "wend_", "gm_", "meta_"], ["LT_"]),
    "scan": (SCAN, ["LT_", "gm_", "C0_", "n0_", "m0_", "meta_"], ["CT_", "mE_", "Cout_", "nout_", "mout_"]),
    "outputs": (OUTPUTS, ["q_", "k_", "v_", "b_", "ig_", "u_", "CT_", "mE_", "meta_", "eps_"], ["h_"]),
}
CUDA_IDIOMS = {"UNROLL": "_Pragma(\"unroll\")", "NOUNROLL": "_Pragma(\"unroll 1\")", "SHARED": "__shared__ __align__(16)", "BARRIER": "__syncthreads()",
               "TID": "int(threadIdx.x)", "GX": "int(blockIdx.x)", "GY": "int(blockIdx.y)", "GZ": "int(blockIdx.z)"}


def _cuda_kernel(which: str):
    from .fused_chunkwise import source
    body, ins, outs = SOURCES[which]
    return gpu_kernel("cuda", f"xlstm_mlstm_tc_{which}", ins, outs, lambda: source(body, CUDA_IDIOMS), header=HEADER)


def _make_chunkwise(make_kernel=None, io_dtype=mx.bfloat16, entry_dtype=mx.bfloat16, fallback=None):
    """The four-launch kernel. ``make_kernel(name)`` may supply the launches (the tests run the same text on the
    CPU with float32 arrays holding bfloat16 values: ``io_dtype`` / ``entry_dtype`` float32); ``fallback``
    computes the cases the launches do not cover (default: the best native chunkwise kernel)."""
    make_kernel = make_kernel or _cuda_kernel

    def launch(q, k, v, i, f, state, eps, mask, upto="outputs"):
        """The four launches over one segment; ``upto`` stops after "gates", "local" or "scan" (for profiling)."""
        B, NH, S, DK = q.shape
        DV = v.shape[-1]
        BH, NC = B * NH, -(-S // CHUNK)
        # per-head rows for the launches; made once, as a head-major view of the projections costs a copy each
        # time (k and v feed two launches: reshaped per launch they were copied twice, 5 copies per block)
        k, v = k.reshape(BH, S, DK), v.reshape(BH, S, DV)
        meta = constant((S, NC, DK, DV, NH), mx.int32)
        keep = constant((0.0,), mx.float32) if mask is None else mask.astype(mx.float32)
        b, ig, wend, u, gm = make_kernel("gates")(
            inputs=[i.reshape(BH, S), f.reshape(BH, S), keep, meta], template=[("HAS_MASK", int(mask is not None))],
            grid=(CHUNK * NC, BH, 1), threadgroup=(CHUNK, 1, 1),
            output_shapes=[(BH, NC * CHUNK)] * 4 + [(BH, NC, 2)], output_dtypes=[mx.float32] * 5)
        if upto == "gates":
            return b, ig, wend, u, gm
        if LOCAL_LAUNCH == "chunk" and DK <= 256:
            (LT,) = make_kernel("local_chunk")(
                inputs=[k, v, wend, gm, meta], template=[("T", io_dtype)],
                grid=(256 * NC, BH, 1), threadgroup=(256, 1, 1),
                output_shapes=[(BH, NC, DV + 1, DK)], output_dtypes=[entry_dtype])
        else:
            (LT,) = make_kernel("local")(
                inputs=[k, v, wend, gm, meta], template=[("T", io_dtype)],
                grid=(THREADS * -(-(DV + 1) // TILE), NC * -(-DK // TILE), BH), threadgroup=(THREADS, 1, 1),
                output_shapes=[(BH, NC, DV + 1, DK)], output_dtypes=[entry_dtype])
        if upto == "local":
            return LT
        has_state = state is not None
        C0, n0, m0 = state if has_state else (constant((0.0,), mx.float32),) * 3
        CT, mE, C, n, m = make_kernel("scan")(
            inputs=[LT, gm, C0, n0, m0, meta], template=[("HAS_STATE", int(has_state))],
            grid=(THREADS * -(-((DV + 1) * DK // 8) // THREADS), BH, 1), threadgroup=(THREADS, 1, 1),
            output_shapes=[(BH, NC, DV + 1, DK), (BH, NC), (B, NH, DK, DV), (B, NH, DK), (B, NH)],
            output_dtypes=[entry_dtype, mx.float32, mx.float32, mx.float32, mx.float32])
        if upto == "scan":
            return CT, mE, C, n, m
        (h,) = make_kernel("outputs")(
            inputs=[q.reshape(BH, S, DK), k, v, b, ig, u, CT, mE, meta,
                    constant((float(eps),), mx.float32)],
            template=[("T", io_dtype)], grid=(THREADS * -(-DV // TILE), NC, BH), threadgroup=(THREADS, 1, 1),
            output_shapes=[(B, NH, S, DV)], output_dtypes=[io_dtype])
        if mask is not None:
            h = mx.where(mask[:, None, :, None], h, mx.zeros((), h.dtype))
        return h, (C, n, m)

    def chunkwise(q, k, v, i, f, state=None, *, chunk_size=64, eps=1e-6, mask=None):
        B, NH, S, DK = q.shape
        if int(chunk_size) < 1:
            raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
        if S == 0 or not (q.dtype == k.dtype == v.dtype == io_dtype and DK % 8 == 0 and v.shape[-1] % 8 == 0):
            fb = fallback or _native_fallback
            return fb(q, k, v, i, f, state, chunk_size=chunk_size, eps=eps, mask=mask)
        if mask is not None:
            mask = mask.astype(mx.bool_)
        if state is not None:
            state = tuple(a.astype(mx.float32) for a in state)
        seg = SEGMENT_CHUNKS * CHUNK
        hs = []
        for s0 in range(0, S, seg):  # long inputs: launches of SEGMENT_CHUNKS chunks, the state carried across
            part = slice(s0, min(S, s0 + seg))
            h, state = launch(q[:, :, part], k[:, :, part], v[:, :, part], i[:, :, part], f[:, :, part], state, eps,
                              None if mask is None else mask[:, part])
            hs.append(h)
        return (hs[0] if len(hs) == 1 else mx.concatenate(hs, axis=2)), state

    chunkwise.launch = launch
    chunkwise.__doc__ = (f"bfloat16 chunkwise forward on CUDA tensor cores (gates, local states, scan, outputs: four launches per "
                         f"{SEGMENT_CHUNKS} chunks of {CHUNK} tokens); other dtypes and shapes run the native kernel.")
    return chunkwise


def _native_fallback(q, k, v, i, f, state=None, **kw):
    """What runs where the launches do not apply: the compiled native kernel on a GPU, the eager one elsewhere."""
    from .compiled import mlstm_chunkwise_compiled
    on_gpu = mx.default_device().type == mx.DeviceType.gpu
    return (mlstm_chunkwise_compiled if on_gpu else mlstm_chunkwise_native)(q, k, v, i, f, state, **kw)


# First-use bound, relative to max(1, max |native|): bfloat16 operands round to 8 significant bits (2^-9 relative),
# and the check's inputs include outputs divided by small normalisers (|h| up to ~190): 1.42e-2 measured, the same
# in the CPU emulation and on an H200. A wrong index or weight gives errors of order 1.
TOLERANCE = 3e-2
_verified: dict[str, bool] = {}


def check_errors(fn, io_dtype=mx.bfloat16) -> float:
    """Worst relative error of ``fn`` against the native kernel (on the CPU, float32 math) on bfloat16 inputs that
    exercise a partial key piece, partial value tiles (the normaliser column inside a tile, and a tile of its
    own), a padded last chunk, several chunks, a mask and an incoming state."""
    import numpy as np

    rng = np.random.default_rng(0)
    errors = []
    for B, NH, S, DK, DV in ((2, 2, 37, 48, 40), (1, 1, 200, 64, 64), (1, 2, 130, 72, 136)):
        bf = lambda *s, scale=1.0, shift=0.0: mx.array((rng.normal(size=s) * scale + shift).astype(np.float32)).astype(mx.bfloat16)  # noqa: E731
        q, k, v = bf(B, NH, S, DK), bf(B, NH, S, DK), bf(B, NH, S, DV)
        i, f = bf(B, NH, S, scale=3.0), bf(B, NH, S, scale=3.0, shift=2.0)
        f32 = lambda a: mx.array(np.asarray(a.astype(mx.float32)))  # noqa: E731
        state = (f32(bf(B, NH, DK, DV)), f32(bf(B, NH, DK)), f32(bf(B, NH)))
        mask = mx.array(rng.random((B, S)) > 0.2)
        for st, mk in ((None, None), (state, mask)):
            got = fn(*(a.astype(io_dtype) for a in (q, k, v, i, f)), st, chunk_size=64, mask=mk)
            want = native_on_cpu(mlstm_chunkwise_native, *(f32(a) for a in (q, k, v, i, f)), st, chunk_size=64, mask=mk)
            errors.append(relative_error(got, want))
    return worst(errors)


def self_check(backend: str = "cuda", make_kernel=None, io_dtype=mx.bfloat16, entry_dtype=mx.bfloat16) -> bool:
    fn = _make_chunkwise(make_kernel, io_dtype, entry_dtype, fallback=mlstm_chunkwise_native)
    return check_once(_verified, backend, "chunkwise (bf16 tensor cores)", lambda: check_errors(fn, io_dtype),
                      tolerance=TOLERANCE)


PRIORITY = 8  # above the compiled native kernel (5) for bfloat16 inputs

register_kernel(KernelInfo(
    "mlstm", "chunkwise", "cuda_tc_chunkwise", _make_chunkwise(), backend="cuda", devices=frozenset({"gpu"}),
    dtypes=frozenset({"bfloat16"}), math_dtype="bfloat16", priority=PRIORITY, differentiable=False,
    reference=mlstm_chunkwise_native,
    is_available=lambda: backend_present("cuda") and self_check("cuda"),
    doc="CUDA bf16 tensor-core chunkwise forward (gates, local states, scan, outputs; bf16 operands, f32 accumulation)"))
