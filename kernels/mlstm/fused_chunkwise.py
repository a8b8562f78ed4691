"""Fused mLSTM chunkwise forward in two GPU launches (CUDA and Metal), float32 math.

The native chunkwise kernel is a few dozen MLX operations; this is the same algorithm as two kernels:

1. **states**: one threadgroup per (value tile, key tile, batch·head) walks the chunks in order with
   a 64x64 tile of C in registers (a 4x4 block per thread), writes the state entering every chunk,
   and adds each chunk's contribution as rank-32 updates from k and v in shared memory, weighted by
   the gates. The stabiliser follows the recurrence ``m' = max(g + m, max_s w_s)``.
2. **outputs**: one threadgroup per (value-tile group, chunk, batch·head) forms the gated, causal
   ``P = (q k^T) * W`` of its chunk once, then for each 64-wide value tile adds ``P v`` and the
   entry-state readout ``q C_in``, and divides by the normaliser.

Everything the kernels compute is in float32 (q, k, v are read in their own dtype and converted),
so the result matches the native kernel to float32 rounding. The gate preparation (log-sigmoid,
masking, padding, within-chunk cumulative sums and maxima) stays in MLX: a few small arrays. Shapes
are run-time arguments (one compiled kernel per dtype), and each threadgroup uses under 32 KB of
shared memory, the Metal limit. Sequences longer than ``SEGMENT_CHUNKS`` chunks run in segments so
that the buffer of entry states stays bounded.

The algorithm is written once, in the common subset of CUDA and Metal, with a handful of words
(``SHARED``, ``BARRIER``, ``LDS4``, ``TID``, ``GX``/``GY``/``GZ``) replaced by each language's idiom;
the tests compile the same text as C++/OpenMP and run it against the native kernel on the CPU. Like
the fused step, each backend checks itself against the native kernel the first time it is
selected in a process and refuses itself with a warning if it disagrees (or does not compile).
Measured slower than the compiled native kernel on an H100 (see ``PRIORITY``), it ranks below it.
"""
from __future__ import annotations

import math
import re

import mlx.core as mx

from ..gpu_kernel import gpu_kernel
from ..registry import KernelInfo, register_kernel
from .first_use import backend_present, check_once, chunkwise_error
from .native import _NEG, _running_sum, mlstm_chunkwise_native

TILE = 64  # rows and columns of the tiles both kernels work on; a chunk is at most this long
THREADS = 256  # threads per threadgroup: a 16x16 grid, each thread owning a 4x4 block of a tile

# Both kernels' inner step: a thread's 4x4 block of a tile gains the outer product of two 16-byte vectors
# read from shared memory, the first scaled by XS (a preprocessor macro: the same text in CUDA and Metal).
_OUTER = r"""
#define ADD_OUTER_4X4(ACC, XV, XS, YV) { \
        const float4 xv_ = (XV); \
        const float4 yv_ = (YV); \
        const float xa_[4] = {xv_.x * (XS), xv_.y * (XS), xv_.z * (XS), xv_.w * (XS)}; \
        const float yb_[4] = {yv_.x, yv_.y, yv_.z, yv_.w}; \
        for (int a_ = 0; a_ < 4; ++a_) { \
            for (int b_ = 0; b_ < 4; ++b_) ACC[a_][b_] += xa_[a_] * yb_[b_]; \
        } \
    }
"""

# Kernel 1. Template: the q/k/v dtype T. Everything else is read at run time from meta_ =
# [S, NC, DK, DV, L, NH, TILES_PER_GROUP], so one compiled kernel per dtype serves every shape. Thread (tid) owns rows
# r0..r0+3 and columns c0..c0+3 of the 64x64 tile, so its shared-memory reads are 16-byte vectors. A chunk is
# taken in pieces of 32 tokens (shared memory stays under 32 KB, the Metal limit); each piece's k, v and gate
# weight are loaded into registers while the previous piece is being added to the state.
_STATES = _OUTER + """
    const int tid = TID;
    const int dv0 = GX * 64;
    const int dk0 = GY * 64;
    const int bh = GZ;
    const int S = meta_[0];
    const int NC = meta_[1];
    const int DK = meta_[2];
    const int DV = meta_[3];
    const int L = meta_[4];
    const int r0 = (tid / 16) * 4;
    const int c0 = (tid % 16) * 4;
    const int pieces = (L + 31) / 32;
    constexpr int PER = 8;  // piece elements each thread loads: 32 x 64 / 256
    SHARED float k_sh[32 * 64];
    SHARED float v_sh[32 * 64];
    SHARED float e_sh[32];
    float c[4][4];
    for (int a = 0; a < 4; ++a) {
        for (int b = 0; b < 4; ++b) {
            const int row = dk0 + r0 + a;
            const int col = dv0 + c0 + b;
            c[a][b] = (row < DK && col < DV) ? C0_[((long)bh * DK + row) * DV + col] : 0.0f;
        }
    }
    const bool has_n = tid < 64 && dk0 + tid < DK;
    float n_r = has_n ? n0_[bh * DK + dk0 + tid] : 0.0f;
    float m = m0_[bh];
    float m_next = 0.0f;
    float decay = 1.0f;
    float kx[PER];
    float vx[PER];
    float w_next = 0.0f;
    float g_next = g_[(long)bh * NC];
    float ml_next = ml_[(long)bh * NC];
    int ch = 0;
    int piece = 0;
    // load piece (ch, piece) of the chunk sequence into kx, vx, w_next
    {
        const int s0 = ch * L + piece * 32;
        const int n_tok = L - piece * 32 < 32 ? L - piece * 32 : 32;
        if (tid < n_tok) w_next = w_[(long)bh * NC * L + (long)ch * L + piece * 32 + tid];
        for (int j = 0; j < PER; ++j) {
            const int idx = tid + 256 * j;
            const int r = idx % 64;
            const int t = s0 + idx / 64;
            const bool tok = idx / 64 < n_tok && t < S;
            kx[j] = (tok && dk0 + r < DK) ? static_cast<float>(k_[((long)bh * S + t) * DK + dk0 + r]) : 0.0f;
            vx[j] = (tok && dv0 + r < DV) ? static_cast<float>(v_[((long)bh * S + t) * DV + dv0 + r]) : 0.0f;
        }
    }
    for (int step = 0; step < NC * pieces; ++step) {
        const int n_tok = L - piece * 32 < 32 ? L - piece * 32 : 32;
        if (piece == 0) {
            const long sbase = ((long)bh * NC + ch) * DK;
            for (int a = 0; a < 4; ++a) {
                for (int b = 0; b < 4; ++b) {
                    const int row = dk0 + r0 + a;
                    const int col = dv0 + c0 + b;
                    if (row < DK && col < DV) Cin_[(sbase + row) * DV + col] = c[a][b];
                }
            }
            if (has_n && GX == 0) nin_[sbase + dk0 + tid] = n_r;
            if (tid == 0 && GX == 0 && GY == 0) min_[(long)bh * NC + ch] = m;
            m_next = fmax(g_next + m, ml_next);
            decay = exp(g_next + m - m_next);
        }
        for (int j = 0; j < PER; ++j) {
            k_sh[tid + 256 * j] = kx[j];
            v_sh[tid + 256 * j] = vx[j];
        }
        if (tid < 32) e_sh[tid] = tid < n_tok ? exp(w_next - m_next) : 0.0f;
        BARRIER;
        // prefetch the next piece while this one is added to the state
        const int next_piece = piece + 1 < pieces ? piece + 1 : 0;
        const int next_ch = piece + 1 < pieces ? ch : ch + 1;
        if (next_ch < NC) {
            const int s0 = next_ch * L + next_piece * 32;
            const int nn = L - next_piece * 32 < 32 ? L - next_piece * 32 : 32;
            if (tid < nn) w_next = w_[(long)bh * NC * L + (long)next_ch * L + next_piece * 32 + tid];
            if (next_ch != ch) {
                g_next = g_[(long)bh * NC + next_ch];
                ml_next = ml_[(long)bh * NC + next_ch];
            }
            for (int j = 0; j < PER; ++j) {
                const int idx = tid + 256 * j;
                const int r = idx % 64;
                const int t = s0 + idx / 64;
                const bool tok = idx / 64 < nn && t < S;
                kx[j] = (tok && dk0 + r < DK) ? static_cast<float>(k_[((long)bh * S + t) * DK + dk0 + r]) : 0.0f;
                vx[j] = (tok && dv0 + r < DV) ? static_cast<float>(v_[((long)bh * S + t) * DV + dv0 + r]) : 0.0f;
            }
        }
        if (piece == 0) {
            for (int a = 0; a < 4; ++a) {
                for (int b = 0; b < 4; ++b) c[a][b] *= decay;
            }
            n_r *= decay;
        }
        #pragma unroll 4
        for (int s = 0; s < n_tok; ++s) {
            ADD_OUTER_4X4(c, LDS4 k_sh[s * 64 + r0], e_sh[s], LDS4 v_sh[s * 64 + c0]);
        }
        if (tid < 64) {
            float acc = n_r;
            for (int s = 0; s < n_tok; ++s) acc += k_sh[s * 64 + tid] * e_sh[s];
            n_r = acc;
        }
        if (piece + 1 == pieces) m = m_next;
        ch = next_ch;
        piece = next_piece;
        BARRIER;
    }
    for (int a = 0; a < 4; ++a) {
        for (int b = 0; b < 4; ++b) {
            const int row = dk0 + r0 + a;
            const int col = dv0 + c0 + b;
            if (row < DK && col < DV) Cout_[((long)bh * DK + row) * DV + col] = c[a][b];
        }
    }
    if (has_n && GX == 0) nout_[bh * DK + dk0 + tid] = n_r;
    if (tid == 0 && GX == 0 && GY == 0) mout_[bh] = m;
"""

# Kernel 2. Template and meta_ as kernel 1, plus eps_. Inner products run over slices of 16 keys (or 16
# tokens), again to stay under 32 KB of shared memory.
# Thread (tid) owns rows t0..t0+3 (tokens) and columns j0..j0+3 of each 64x64 output tile.
_OUTPUTS = _OUTER + """
    const int tid = TID;
    const int ch = GY;
    const int bh = GZ;
    const int S = meta_[0];
    const int NC = meta_[1];
    const int DK = meta_[2];
    const int DV = meta_[3];
    const int L = meta_[4];
    const int NH = meta_[5];
    const int TILES_PER_GROUP = meta_[6];
    const int t0 = (tid / 16) * 4;
    const int u0 = (tid % 16) * 4;
    const long gbase = (long)bh * NC * L + (long)ch * L;
    const long sbase = ((long)bh * NC + ch) * DK;
    const float scale = rsqrt(static_cast<float>(DK));
    const float m_in = min_[(long)bh * NC + ch];
    SHARED float p_sh[64 * 68];
    SHARED float q_sh[16 * 68];
    SHARED float x_sh[16 * 68];
    SHARED float n_sh[16];
    SHARED float bc_sh[64];
    SHARED float ig_sh[64];
    SHARED float mt_sh[64];
    SHARED float si_sh[64];
    SHARED float den_sh[64];
    SHARED float lf_sh[64];
    if (tid < L) {
        bc_sh[tid] = b_[gbase + tid];
        ig_sh[tid] = ig_[gbase + tid];
        lf_sh[tid] = lf_[gbase + tid];
    }
    BARRIER;
    // Token t's stabiliser and gate weights W[s][t] = exp(sum(lf[s+1..t]) + ig[s] - m_t) into p_sh, each sum
    // accumulated directly from t down to s (not as a difference of two cumulative sums, which loses float32
    // precision when many strongly closed forget gates precede the pair).
    if (tid < L) {
        const int t = tid;
        float mt = bc_sh[t] + m_in;
        float seg = 0.0f;
        for (int s = t; s >= 0; --s) {
            mt = fmax(mt, seg + ig_sh[s]);
            seg += lf_sh[s];
        }
        seg = 0.0f;
        for (int s = t; s >= 0; --s) {
            p_sh[s * 68 + t] = exp(seg + ig_sh[s] - mt);
            seg += lf_sh[s];
        }
        mt_sh[t] = mt;
        si_sh[t] = exp(bc_sh[t] + m_in - mt);
    }
    float acc[4][4];
    for (int a = 0; a < 4; ++a) {
        for (int b = 0; b < 4; ++b) acc[a][b] = 0.0f;
    }
    float qn = 0.0f;
    for (int d0 = 0; d0 < DK; d0 += 16) {
        BARRIER;
        for (int idx = tid; idx < 64 * 16; idx += 256) {
            const int t = idx / 16;
            const int d = idx % 16;
            const int tok = ch * L + t;
            const bool ok = t < L && tok < S && d0 + d < DK;
            q_sh[d * 68 + t] = ok ? static_cast<float>(q_[((long)bh * S + tok) * DK + d0 + d]) * scale : 0.0f;
            x_sh[d * 68 + t] = ok ? static_cast<float>(k_[((long)bh * S + tok) * DK + d0 + d]) : 0.0f;
        }
        if (tid < 16) n_sh[tid] = d0 + tid < DK ? nin_[sbase + d0 + tid] : 0.0f;
        BARRIER;
        #pragma unroll 8
        for (int d = 0; d < 16; ++d) {
            ADD_OUTER_4X4(acc, LDS4 q_sh[d * 68 + t0], 1.0f, LDS4 x_sh[d * 68 + u0]);
        }
        if (tid < 64) {
            for (int d = 0; d < 16; ++d) qn += q_sh[d * 68 + tid] * n_sh[d];
        }
    }
    for (int a = 0; a < 4; ++a) {
        const int t = t0 + a;
        for (int b = 0; b < 4; ++b) {
            const int s = u0 + b;
            const bool causal = t < L && s <= t;
            p_sh[s * 68 + t] = causal ? acc[a][b] * p_sh[s * 68 + t] : 0.0f;
        }
    }
    BARRIER;
    if (tid < L) {
        float rs = 0.0f;
        for (int s = 0; s < L; ++s) rs += p_sh[s * 68 + tid];
        const float total = rs + si_sh[tid] * qn;
        den_sh[tid] = fmax(fabs(total), exp(fmin(-mt_sh[tid], 80.0f))) + eps_[0];
    }
    for (int tile = GX * TILES_PER_GROUP; tile < (GX + 1) * TILES_PER_GROUP && tile * 64 < DV; ++tile) {
        const int j0 = tile * 64;
        float hc[4][4];
        float hp[4][4];
        for (int a = 0; a < 4; ++a) {
            for (int b = 0; b < 4; ++b) {
                hc[a][b] = 0.0f;
                hp[a][b] = 0.0f;
            }
        }
        for (int d0 = 0; d0 < DK; d0 += 16) {
            BARRIER;
            for (int idx = tid; idx < 64 * 16; idx += 256) {
                const int t = idx / 16;
                const int d = idx % 16;
                const int tok = ch * L + t;
                const bool ok = t < L && tok < S && d0 + d < DK;
                q_sh[d * 68 + t] = ok ? static_cast<float>(q_[((long)bh * S + tok) * DK + d0 + d]) * scale : 0.0f;
                const int dd = idx / 64;
                const int j = idx % 64;
                x_sh[dd * 68 + j] = (d0 + dd < DK && j0 + j < DV) ? Cin_[(sbase + d0 + dd) * DV + j0 + j] : 0.0f;
            }
            BARRIER;
            #pragma unroll 8
            for (int d = 0; d < 16; ++d) {
                ADD_OUTER_4X4(hc, LDS4 q_sh[d * 68 + t0], 1.0f, LDS4 x_sh[d * 68 + u0]);
            }
        }
        for (int s0 = 0; s0 < L; s0 += 16) {
            BARRIER;
            for (int idx = tid; idx < 16 * 64; idx += 256) {
                const int s = idx / 64;
                const int j = idx % 64;
                const int tok = ch * L + s0 + s;
                x_sh[s * 68 + j] = (s0 + s < L && tok < S && j0 + j < DV)
                    ? static_cast<float>(v_[((long)bh * S + tok) * DV + j0 + j]) : 0.0f;
            }
            BARRIER;
            for (int s = 0; s < 16 && s0 + s < L; ++s) {
                ADD_OUTER_4X4(hp, LDS4 p_sh[(s0 + s) * 68 + t0], 1.0f, LDS4 x_sh[s * 68 + u0]);
            }
        }
        for (int a = 0; a < 4; ++a) {
            const int t = t0 + a;
            const int tok = ch * L + t;
            if (t >= L || tok >= S) continue;
            const bool keep = keep_[(long)(bh / NH) * NC * L + tok] > 0.0f;
            for (int b = 0; b < 4; ++b) {
                const int j = j0 + u0 + b;
                if (j >= DV) continue;
                const float h = (hp[a][b] + si_sh[t] * hc[a][b]) / den_sh[t];
                h_[((long)bh * S + tok) * DV + j] = static_cast<T>(keep ? h : 0.0f);
            }
        }
    }
"""

_STATES_INPUTS = ["q_", "k_", "v_", "w_", "g_", "ml_", "C0_", "n0_", "m0_", "meta_"]
_STATES_OUTPUTS = ["Cin_", "nin_", "min_", "Cout_", "nout_", "mout_"]
_OUTPUTS_INPUTS = ["q_", "k_", "v_", "b_", "ig_", "lf_", "keep_", "Cin_", "nin_", "min_", "meta_", "eps_"]
_OUTPUTS_OUTPUTS = ["h_"]

IDIOMS = {
    "cuda": {"SHARED": "__shared__ __align__(16)", "BARRIER": "__syncthreads()", "LDS4": "*(const float4*)&",
             "UNROLL": "_Pragma(\"unroll\")", "UNROLL8": "_Pragma(\"unroll 8\")",
             "TID": "int(threadIdx.x)",
             "GX": "int(blockIdx.x)", "GY": "int(blockIdx.y)", "GZ": "int(blockIdx.z)"},
    # Metal aligns threadgroup allocations to 16 bytes (MLX's own kernels read them as vectors too)
    "metal": {"SHARED": "threadgroup", "BARRIER": "threadgroup_barrier(mem_flags::mem_threadgroup)",
              "UNROLL": "_Pragma(\"unroll\")", "UNROLL8": "_Pragma(\"unroll 8\")",
              "LDS4": "*(threadgroup const float4*)&",
              "TID": "int(thread_position_in_threadgroup.x)", "GX": "int(threadgroup_position_in_grid.x)",
              "GY": "int(threadgroup_position_in_grid.y)", "GZ": "int(threadgroup_position_in_grid.z)"},
}


def source(body: str, backend: str | dict) -> str:
    """``body`` in ``backend``'s language (or with an explicit idiom mapping): each idiom word replaced
    as a whole word."""
    idioms = IDIOMS[backend] if isinstance(backend, str) else backend
    return re.sub(r"\b(" + "|".join(idioms) + r")\b", lambda m: idioms[m.group(1)], body)


# name -> (algorithm text, input names, output names)
KERNELS = {"states": (_STATES, _STATES_INPUTS, _STATES_OUTPUTS), "outputs": (_OUTPUTS, _OUTPUTS_INPUTS, _OUTPUTS_OUTPUTS)}


def _kernel(backend: str, which: str):
    body, ins, outs = KERNELS[which]
    return gpu_kernel(backend, f"xlstm_mlstm_chunkwise_{which}", ins, outs, lambda: source(body, backend))


def _prepare_gates(i, f, mask, L: int, NC: int):
    """The per-token and per-chunk gate arrays both launches read, in float32 (all small: one value
    per token or per chunk). Masked and padded positions get forget gate 1 and input gate ``-1e30``.

    Per token, flattened to [B*NH, NC*L]: ``b`` the log forget gate summed from the chunk start,
    ``ig`` the input gate, ``w`` (the log forget gates after the token in its chunk, plus ``ig``) the
    token's log weight in its chunk's end state, ``lf`` the log forget gate itself (the outputs kernel
    sums it between each pair of tokens). Sums over a stretch of tokens are taken directly, never as
    differences of cumulative sums: those lose float32 precision relative to a short stretch after many
    strongly closed gates. Per chunk [B*NH, NC]: ``g`` the whole-chunk log forget gate and
    ``ml = max(w)``. Per token [B, NC*L]: ``keep`` (1 for real tokens)."""
    B, NH, S = i.shape
    pad = NC * L - S
    log_f = -mx.logaddexp(mx.array(0.0, mx.float32), -f.astype(mx.float32))
    ig = i.astype(mx.float32)
    keep = mx.ones((B, S), mx.bool_) if mask is None else mask.astype(mx.bool_)
    if mask is not None:
        log_f = mx.where(keep[:, None], log_f, 0.0)
        ig = mx.where(keep[:, None], ig, _NEG)
    if pad:
        log_f = mx.pad(log_f, [(0, 0), (0, 0), (0, pad)])
        ig = mx.pad(ig, [(0, 0), (0, 0), (0, pad)], constant_values=_NEG)
        keep = mx.pad(keep, [(0, 0), (0, pad)])
    ig = ig.reshape(B * NH, NC, L)
    log_f = log_f.reshape(B * NH, NC, L)
    b = _running_sum(log_f)
    g = b[..., -1]
    w = _running_sum(log_f, inclusive=False, reverse=True) + ig  # a direct sum, not g - b (see the docstring)
    flat = lambda x: x.reshape(B * NH, NC * L)  # noqa: E731
    return dict(b=flat(b), ig=flat(ig), lf=flat(log_f), w=flat(w), g=g, ml=mx.max(w, axis=-1), keep=keep.astype(mx.float32))


# Measured on an H100 (7B heads, bf16; bench_kernel.py / profile_fused_chunkwise.py, four runs): 0.84-1.8 ms at
# 1k tokens against 1.1-1.3 ms for the compiled native kernel, 2.9-3.0 against 1.8-2.4 ms at 4k, 38-41 against
# 22 ms at 64k; a 7B prefill of 1k tokens ran at 9.9k tok/s with it against 13.2k with the compiled kernel.
# The native kernel's float32 matmuls run on tensor cores (TF32) and these SIMT loops do not (ncu: the state
# loop issues about one instruction per cycle per SM, waiting on shared-memory loads). So this kernel ranks
# below the compiled one and is used where that one is not registered, or when a spec or override names it.
PRIORITY = 3

SEGMENT_CHUNKS = 128  # chunks per pair of launches: bounds the entry-state buffer (128 x DK x DV x 4 bytes per head)


def _make_chunkwise(backend: str, make_kernel=None):
    """The chunkwise kernel for ``backend``; ``make_kernel(which)`` may supply the two launches
    (the tests run the same algorithm text on the CPU this way)."""
    make_kernel = make_kernel or (lambda which: _kernel(backend, which))

    def launches(q, k, v, i, f, state, L, eps, mask):
        B, NH, S, DK = q.shape
        DV, BH, dt = v.shape[-1], B * NH, v.dtype
        NC = math.ceil(S / L)
        gates = _prepare_gates(i, f, mask, L, NC)
        # both launches read q, k, v: a strided (head-major) view would be copied for each launch, so once here
        q, k, v = (mx.contiguous(t) for t in (q, k, v))
        C0, n0, m0 = state
        n_dk, n_dv = math.ceil(DK / TILE), math.ceil(DV / TILE)
        # Short inputs have few chunks: split the value tiles over more threadgroups to fill the GPU.
        groups = max(1, min(n_dv, 512 // (NC * BH)))
        per_group = math.ceil(n_dv / groups)
        groups = math.ceil(n_dv / per_group)
        meta = mx.array([S, NC, DK, DV, L, NH, per_group], mx.int32)
        C_in, n_in, m_in, C, n, m = make_kernel("states")(
            inputs=[q, k, v, gates["w"], gates["g"], gates["ml"], C0, n0, m0, meta], template=[("T", dt)],
            grid=(THREADS * n_dv, n_dk, BH), threadgroup=(THREADS, 1, 1),
            output_shapes=[(BH, NC, DK, DV), (BH, NC, DK), (BH, NC), (B, NH, DK, DV), (B, NH, DK), (B, NH)],
            output_dtypes=[mx.float32] * 6)
        (h,) = make_kernel("outputs")(
            inputs=[q, k, v, gates["b"], gates["ig"], gates["lf"], gates["keep"], C_in, n_in, m_in, meta,
                    mx.array([eps], mx.float32)],
            template=[("T", dt)], grid=(THREADS * groups, NC, BH), threadgroup=(THREADS, 1, 1),
            output_shapes=[(B, NH, S, DV)], output_dtypes=[dt])
        return h, (C, n, m)

    def chunkwise(q, k, v, i, f, state=None, *, chunk_size=64, eps=1e-6, mask=None):
        B, NH, S, DK = q.shape
        DV = v.shape[-1]
        if int(chunk_size) < 1:
            raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
        if S == 0:
            return mlstm_chunkwise_native(q, k, v, i, f, state, chunk_size=chunk_size, eps=eps, mask=mask)
        L = min(int(chunk_size), TILE, S)
        dt = v.dtype
        q, k = q.astype(dt), k.astype(dt)
        if state is None:
            state = (mx.zeros((B, NH, DK, DV), mx.float32), mx.zeros((B, NH, DK), mx.float32), mx.zeros((B, NH), mx.float32))
        state = tuple(a.astype(mx.float32) for a in state)
        seg = SEGMENT_CHUNKS * L
        hs = []
        for s0 in range(0, S, seg):  # long inputs: segments of SEGMENT_CHUNKS chunks, the state carried across
            part = slice(s0, min(S, s0 + seg))
            h, state = launches(q[:, :, part], k[:, :, part], v[:, :, part], i[:, :, part], f[:, :, part], state, L, eps,
                                None if mask is None else mask[:, part])
            hs.append(h)
        return (hs[0] if len(hs) == 1 else mx.concatenate(hs, axis=2)), state
    chunkwise.__doc__ = (f"Fused {backend.upper()} chunkwise forward (two launches per {SEGMENT_CHUNKS} chunks, float32 "
                         f"math); chunks of at most {TILE} tokens.")
    return chunkwise


_verified: dict[str, bool] = {}


def self_check(backend: str, fn=None) -> bool:
    """Run the fused kernel and the native one on small random inputs that exercise partial tiles,
    a padded last chunk, a mask and an incoming state; True when they agree."""
    fn = fn or _make_chunkwise(backend)
    shapes = ((2, 2, 37, 72, 20, 16), (1, 1, 130, 64, 96, 64))
    errors = lambda: chunkwise_error(fn, shapes)  # noqa: E731
    return check_once(_verified, backend, "chunkwise", errors)


for _backend in ("cuda", "metal"):
    register_kernel(KernelInfo(
        "mlstm", "chunkwise", f"{_backend}_chunkwise", _make_chunkwise(_backend), backend=_backend,
        devices=frozenset({"gpu"}), dtypes=frozenset({"float32", "bfloat16", "float16"}), priority=PRIORITY,
        differentiable=False, reference=mlstm_chunkwise_native,
        is_available=(lambda b=_backend: backend_present(b) and self_check(b)),
        doc=f"fused {_backend.upper()} chunkwise forward (states + outputs, two launches, float32 math)"))
