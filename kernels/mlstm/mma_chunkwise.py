"""mLSTM chunkwise forward on CUDA tensor cores: one launch carries every value tile's state through
the chunks and writes the outputs; no per-chunk state ever reaches memory.

Why this shape: the native kernel materialises a DK x DV state per chunk (four passes over 268 MB at
4k tokens with the 7B heads), which bounds it by memory bandwidth; the SIMT fused kernel avoids part
of that traffic but its inner products run on the CUDA cores. Here one threadgroup per (batch·head,
16-wide value tile) keeps its 256 x 16 slice of C in shared memory and, chunk by chunk,

1. writes the chunk's outputs ``h = r_intra * (P v) + r_inter * (q C)`` (``mma.sync`` m16n8k8, TF32),
2. steps the state: ``C = decay * C + (k * ew)^T v`` (same instruction),

so q, k, v are read once per value tile and only h and the exit state are written. What is small (one
value per token or per chunk, the L x L gated ``P = (q k^T) * W`` of each chunk, the normaliser state n)
is prepared with MLX ops, in float32, from the same closed forms as the native kernel.

Precision follows MLX's own float32-matmul setting: TF32 operands (10-bit mantissa, like MLX's
matmuls on an NVIDIA GPU) unless ``MLX_ENABLE_TF32=0``, which selects 3xTF32 (each operand split
into two TF32 parts, float32 accuracy at three times the instructions). The first use in a process
checks the result against the native kernel on the CPU with the tolerance of that precision.

CUDA only: the inner products are PTX ``mma.sync`` instructions (inline assembly, no headers, so MLX's
NVRTC compiles it anywhere). The algorithm body is plain C++ over float fragments, so the tests run
the same text on the CPU with an emulated ``mma`` (tests/kernels/cpu_emulator.py); a Metal version
would keep the body and supply ``simdgroup_matrix`` products.
"""
from __future__ import annotations

import math
import os

import mlx.core as mx

from ..gpu_kernel import gpu_kernel
from ..registry import KernelInfo, register_kernel
from .first_use import backend_present, check_once, chunkwise_error
from .native import _MAX_EXP, _entry_log_decay, _prepare, _running_sum, _segment_sums, mlstm_chunkwise_native

TILE_DV = 16  # value columns per threadgroup (TDV in the kernel text)
MAX_DK = 256  # rows of the state slice kept in shared memory (256 x 20 floats = 20 KB, plus 17-18 KB of staged q)
MAX_CHUNK = 64  # tokens per chunk: four 16-row tiles of the output, one per warp pair
THREADS = 256  # eight warps
SEGMENT_CHUNKS = 512  # chunks per launch: bounds the closed forms' NC x NC gate matrices

# tf32 conversion and the m16n8k8 product; PRECISE adds the two cross terms of 3xTF32.
HEADER = r"""
__device__ __forceinline__ unsigned xl_tf32(float x) {
    unsigned r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
    return r;
}
__device__ __forceinline__ void xl_mma(float* d, const unsigned* a, const unsigned* b) {
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
// 16 bytes, aligned, from global to shared memory
template <typename T>
__device__ __forceinline__ void copy16(T* dst, const T* src) { *(uint4*)dst = *(const uint4*)src; }
// two consecutive elements (an aligned pair) as floats
__device__ __forceinline__ void ld2(const float* p, float* a, float* b) { const float2 x = *(const float2*)p; *a = x.x; *b = x.y; }
__device__ __forceinline__ void ld2(const __nv_bfloat16* p, float* a, float* b) {
    const __nv_bfloat162 x = *(const __nv_bfloat162*)p; *a = __low2float(x); *b = __high2float(x);
}
__device__ __forceinline__ void ld2(const __half* p, float* a, float* b) {
    const __half2 x = *(const __half2*)p; *a = __low2float(x); *b = __high2float(x);
}
template <int PRECISE>
__device__ __forceinline__ void mma_tf32(float* d, const float* a, const float* b) {
    unsigned ah[4], bh[2];
#pragma unroll
    for (int r = 0; r < 4; ++r) ah[r] = xl_tf32(a[r]);
#pragma unroll
    for (int r = 0; r < 2; ++r) bh[r] = xl_tf32(b[r]);
    if (PRECISE) {
        unsigned al[4], bl[2];
#pragma unroll
        for (int r = 0; r < 4; ++r) al[r] = xl_tf32(a[r] - __uint_as_float(ah[r]));
#pragma unroll
        for (int r = 0; r < 2; ++r) bl[r] = xl_tf32(b[r] - __uint_as_float(bh[r]));
        xl_mma(d, al, bh);
        xl_mma(d, ah, bl);
    }
    xl_mma(d, ah, bh);
}
"""

# The algorithm. Fragment layout of m16n8k8 (lane = 4 * gid + tig): A (16 x 8) holds (gid, k0), (gid + 8, k0),
# (gid, k1), (gid + 8, k1); B (8 x 8) holds (k0, gid), (k1, gid); the accumulator (16 x 8) holds (gid, 2 tig),
# (gid, 2 tig + 1), (gid + 8, 2 tig), (gid + 8, 2 tig + 1). The product sums over k, so which of the 8 physical
# k-positions a lane's k0, k1 stand for is ours to choose as long as A and B agree: here 2 tig and 2 tig + 1, so
# each lane's pair is adjacent in memory and comes in one load. Operands arrive padded (DK, L to multiples of 8,
# DV to whole tiles) and laid out for these pairs: q and P by token, k (weighted) and v transposed per chunk.
# Every warp runs every mma (rows past the chunk's tokens or the key dims load zeros), so control flow around
# them is uniform. The chunk's q, which every warp reads, is staged in shared memory in 256-byte-wide pieces.
BODY = r"""
    const int tid = TID;
    const int warp = tid / 32;
    const int lane = tid % 32;
    const int gid = lane / 4;
    const int tig = lane % 4;
    const int bh = GY;
    const int NC = meta_[0];
    const int DK = meta_[1];
    const int DV = meta_[2];
    const int L = meta_[3];
    constexpr int TDV = 16;           // value columns per threadgroup
    const int dv0 = GX * TDV;
    constexpr int CS = TDV + 4;       // row stride of the state slice: conflict-free B-fragment reads
    constexpr int QD = 256 / sizeof(T);  // q columns staged at a time (256 bytes of each token's row) ...
    constexpr int QS = QD + 8;           // ... at this row stride (conflict-free A-fragment reads)
    constexpr int V = 16 / sizeof(T);    // elements per 16-byte copy
    constexpr int NTA = TDV / 16;     // 8-column tiles per warp in the outputs (two warps share a row block)
    constexpr int NTB = TDV / 8;      // 8-column tiles per warp in the state update
    SHARED float Cs[256 * CS];        // the state slice: rows = key dims, TDV value columns
    SHARED T qs[64 * QS];             // a piece of the chunk's q, staged with 16-byte copies
    for (int e = tid; e < 256 * TDV; e += 256) {
        const int r = e / TDV;
        const int c = e % TDV;
        Cs[r * CS + c] = r < DK ? C0_[((long)bh * DK + r) * DV + dv0 + c] : 0.0f;
    }
    BARRIER;
    const int t_a = 16 * (warp % 4) + gid;  // outputs: the warp's rows of the chunk ...
    const int t_b = t_a + 8;
    const int n0 = (warp / 4) * (TDV / 2);  // ... and its half of the tile's columns
    const int k0 = 2 * tig;
    for (int ch = 0; ch < NC; ++ch) {
        const long cq = ((long)bh * NC + ch) * L;  // the chunk's first token row in q, P, ri, re, h
        const long ct = (long)bh * NC + ch;        // the chunk in the transposed kT [.., DK, L] and vT [.., DV, L]
        // 1. outputs of the chunk's tokens: h = r_intra * (P v) + r_inter * (q C)
        float y[NTA][4];
        float x[NTA][4];
        UNROLL
        for (int nt = 0; nt < NTA; ++nt) {
            UNROLL
            for (int e = 0; e < 4; ++e) {
                y[nt][e] = 0.0f;
                x[nt][e] = 0.0f;
            }
        }
        for (int p0 = 0; p0 < DK; p0 += QD) {
            const int pw = DK - p0 < QD ? DK - p0 : QD;
            BARRIER;  // the previous piece's readers are done
            for (int e = tid; e < 64 * (QD / V); e += 256) {
                const int r = e / (QD / V);
                const int c = (e % (QD / V)) * V;
                if (r < L && c < pw) copy16(qs + r * QS + c, q_ + (cq + r) * DK + p0 + c);
            }
            BARRIER;
            UNROLL4
            for (int kk = 0; kk < pw / 8; ++kk) {
                const int d = 8 * kk + k0;
                float a[4] = {0.0f, 0.0f, 0.0f, 0.0f};
                if (t_a < L) ld2(qs + t_a * QS + d, &a[0], &a[2]);
                if (t_b < L) ld2(qs + t_b * QS + d, &a[1], &a[3]);
                UNROLL
                for (int nt = 0; nt < NTA; ++nt) {
                    const int n = n0 + 8 * nt + gid;
                    const float b[2] = {Cs[(p0 + d) * CS + n], Cs[(p0 + d + 1) * CS + n]};
                    mma_tf32<PRECISE>(y[nt], a, b);
                }
            }
        }
        UNROLL4
        for (int kk = 0; kk < L / 8; ++kk) {
            const int s = 8 * kk + k0;
            float a[4] = {0.0f, 0.0f, 0.0f, 0.0f};
            if (t_a < L) ld2(P_ + (cq + t_a) * L + s, &a[0], &a[2]);
            if (t_b < L) ld2(P_ + (cq + t_b) * L + s, &a[1], &a[3]);
            UNROLL
            for (int nt = 0; nt < NTA; ++nt) {
                float b[2];
                ld2(vT_ + (ct * DV + dv0 + n0 + 8 * nt + gid) * L + s, &b[0], &b[1]);
                mma_tf32<PRECISE>(x[nt], a, b);
            }
        }
        UNROLL
        for (int nt = 0; nt < NTA; ++nt) {
            UNROLL
            for (int e = 0; e < 4; ++e) {
                const int row = e < 2 ? t_a : t_b;
                if (row < L) {
                    const long tok = cq + row;
                    h_[tok * DV + dv0 + n0 + 8 * nt + k0 + (e & 1)] = static_cast<T>(ri_[tok] * x[nt][e] + re_[tok] * y[nt][e]);
                }
            }
        }
        BARRIER;
        // 2. the state entering the next chunk: C = decay * C + kT v (kT = (k * ew)^T); warp w owns rows 32w .. 32w + 31
        const float dec = decay_[ct];
        float acc[2][NTB][4];
        UNROLL
        for (int mi = 0; mi < 2; ++mi) {
            UNROLL
            for (int nt = 0; nt < NTB; ++nt) {
                UNROLL
                for (int e = 0; e < 4; ++e) {
                    const int r = 32 * warp + 16 * mi + gid + (e < 2 ? 0 : 8);
                    acc[mi][nt][e] = dec * Cs[r * CS + 8 * nt + k0 + (e & 1)];
                }
            }
        }
        UNROLL4
        for (int kk = 0; kk < L / 8; ++kk) {
            const int s = 8 * kk + k0;
            float b[NTB][2];
            UNROLL
            for (int nt = 0; nt < NTB; ++nt) ld2(vT_ + (ct * DV + dv0 + 8 * nt + gid) * L + s, &b[nt][0], &b[nt][1]);
            UNROLL
            for (int mi = 0; mi < 2; ++mi) {
                const int r_a = 32 * warp + 16 * mi + gid;
                const int r_b = r_a + 8;
                float a[4] = {0.0f, 0.0f, 0.0f, 0.0f};
                if (r_a < DK) ld2(kT_ + (ct * DK + r_a) * L + s, &a[0], &a[2]);
                if (r_b < DK) ld2(kT_ + (ct * DK + r_b) * L + s, &a[1], &a[3]);
                UNROLL
                for (int nt = 0; nt < NTB; ++nt) mma_tf32<PRECISE>(acc[mi][nt], a, b[nt]);
            }
        }
        UNROLL
        for (int mi = 0; mi < 2; ++mi) {
            UNROLL
            for (int nt = 0; nt < NTB; ++nt) {
                UNROLL
                for (int e = 0; e < 4; ++e) {
                    const int r = 32 * warp + 16 * mi + gid + (e < 2 ? 0 : 8);
                    Cs[r * CS + 8 * nt + k0 + (e & 1)] = acc[mi][nt][e];
                }
            }
        }
        BARRIER;
    }
    for (int e = tid; e < DK * TDV; e += 256) {
        const int r = e / TDV;
        const int c = e % TDV;
        Cout_[((long)bh * DK + r) * DV + dv0 + c] = Cs[r * CS + c];
    }
"""

INPUTS = ["q_", "kT_", "vT_", "P_", "ri_", "re_", "decay_", "C0_", "meta_"]
OUTPUTS = ["h_", "Cout_"]
CUDA_IDIOMS = {"UNROLL": "_Pragma(\"unroll\")", "UNROLL4": "_Pragma(\"unroll 4\")", "SHARED": "__shared__ __align__(16)", "BARRIER": "__syncthreads()", "TID": "int(threadIdx.x)",
               "GX": "int(blockIdx.x)", "GY": "int(blockIdx.y)"}


def _cuda_kernel():
    from .fused_chunkwise import source
    return gpu_kernel("cuda", "xlstm_mlstm_chunkwise_mma", INPUTS, OUTPUTS, lambda: source(BODY, CUDA_IDIOMS), header=HEADER)


def precise_by_default() -> bool:
    """3xTF32 when MLX itself is told to keep float32 matmuls exact (``MLX_ENABLE_TF32=0``)."""
    return os.environ.get("MLX_ENABLE_TF32", "1") == "0"


def _pad(a, sizes):
    """Zero-pad the trailing axes of ``a`` up to ``sizes``."""
    widths = [(0, 0)] * (a.ndim - len(sizes)) + [(0, n - d) for n, d in zip(sizes, a.shape[a.ndim - len(sizes):])]
    return mx.pad(a, widths) if any(w for _, w in widths) else a


def _operands(q, k, v, i, f, state, mask, L: int, eps: float, tile_dv: int):
    """Everything the launch reads, from the closed forms of the native kernel (``native._chunk_group``) over
    all NC chunks, in the padded, per-chunk layouts the kernel's paired loads want; plus the exit n and m,
    which need no DV-sized work.

    [B*NH, NC, Lp, DKp] ``q`` (input dtype, unscaled); [B*NH, NC, DKp, Lp] ``kT = (k * ew)^T`` (float32: ``ew``
    is the token's weight in the state leaving its chunk); [B*NH, NC, DVp, Lp] ``vT`` (input dtype);
    [B*NH, NC, Lp, Lp] ``P = (q k^T) * W``; [B*NH, NC, Lp] ``r_intra = 1 / denom`` and
    ``r_inter = s_in / denom / sqrt(DK)``, both 0 for masked tokens so their outputs are 0; [B*NH, NC]
    ``decay`` of the entering state over the chunk; [B*NH, DKp, DVp] the incoming C. Lp and DKp are L and DK
    rounded up to 8, DVp is DV rounded up to the value tile."""
    B, NH, S, DK = q.shape
    DV = v.shape[-1]
    NC = S // L
    qf, kf, _, ig, log_f, C0, n0, m0 = _prepare(q, k, v, i, f, state, mask)
    qc, kc = qf.reshape(B, NH, NC, L, DK), kf.reshape(B, NH, NC, L, DK)
    ig, log_f = ig.reshape(B, NH, NC, L), log_f.reshape(B, NH, NC, L)
    b = _running_sum(log_f)
    g = b[..., -1]
    seg_in = _segment_sums(log_f)
    w_end = seg_in[..., L - 1, :] + ig
    m_loc = mx.max(w_end, axis=-1)
    n_loc = mx.sum(kc * mx.exp(w_end - m_loc[..., None])[..., None], axis=-2)  # [B,NH,NC,DK]

    w0 = _entry_log_decay(g) + m0[..., None]
    if NC > 1:
        seg = _segment_sums(g)
        w = mx.concatenate([mx.full(seg.shape[:-2] + (1, NC), -mx.inf), seg[..., :-1, :] + m_loc[..., None, :]], axis=-2)
        m_in = mx.maximum(w0, mx.max(w, axis=-1))
        n_in = mx.exp(w - m_in[..., None]) @ n_loc
    else:
        m_in, n_in = w0, mx.zeros_like(n_loc)
    n_in = n_in + mx.exp(w0 - m_in)[..., None] * n0[:, :, None]

    D = seg_in + ig[..., None, :]
    a_in = b + m_in[..., None]
    m_t = mx.maximum(a_in, mx.max(D, axis=-1))
    P = (qc @ kc.swapaxes(-1, -2)) * mx.exp(D - m_t[..., None])
    s_in = mx.exp(a_in - m_t)
    qn = mx.sum(P, axis=-1) + s_in * mx.sum(qc * n_in[..., None, :], axis=-1)
    denom = mx.maximum(mx.abs(qn), mx.exp(mx.minimum(-m_t, _MAX_EXP))) + eps
    r_intra = 1.0 / denom
    r_inter = s_in * r_intra * (DK ** -0.5)
    if mask is not None:
        keep = mask.astype(mx.bool_).reshape(B, 1, NC, L)
        r_intra, r_inter = mx.where(keep, r_intra, 0.0), mx.where(keep, r_inter, 0.0)

    m_next = mx.maximum(g + m_in, m_loc)  # the stabiliser of the state leaving each chunk
    decay = mx.exp(g + m_in - m_next)
    ew = mx.exp(w_end - m_next[..., None])
    n_out = decay[..., -1, None] * n_in[:, :, -1] + mx.sum(kc[:, :, -1] * ew[:, :, -1, :, None], axis=-2)
    BH = B * NH
    ops = dict(q=q.reshape(BH, NC, L, DK), kT=(kc * ew[..., None]).swapaxes(-1, -2).reshape(BH, NC, DK, L),
               vT=v.reshape(BH, NC, L, DV).swapaxes(-1, -2), P=P.reshape(BH, NC, L, L), ri=r_intra.reshape(BH, NC, L),
               re=r_inter.reshape(BH, NC, L), decay=decay.reshape(BH, NC), C0=C0.reshape(BH, DK, DV))
    return _padded(ops, L, DK, DV, tile_dv), n_out, m_next[..., -1]


def _padded(ops, L: int, DK: int, DV: int, tile_dv: int):
    Lp, DKp, DVp = -(-L // 8) * 8, -(-DK // 8) * 8, -(-DV // tile_dv) * tile_dv
    sizes = dict(q=(Lp, DKp), kT=(DKp, Lp), vT=(DVp, Lp), P=(Lp, Lp), ri=(Lp,), re=(Lp,), decay=(), C0=(DKp, DVp))
    return {name: _pad(a, sizes[name]) for name, a in ops.items()}


_PREPARED: dict[tuple, object] = {}
_NAMES = ("q", "kT", "vT", "P", "ri", "re", "decay", "C0")


def _operands_compiled(q, k, v, i, f, state, mask, L: int, eps: float, tile_dv: int):
    """``_operands`` under ``mx.compile`` (its chains of small elementwise ops fused), one trace per
    (chunk, eps, value tile, mask given)."""
    key = (L, eps, tile_dv, mask is not None)
    if key not in _PREPARED:
        def run(q, k, v, i, f, C, n, m, *mask_):
            ops, n_out, m_out = _operands(q, k, v, i, f, (C, n, m), mask_[0] if mask_ else None, L, eps, tile_dv)
            return tuple(ops[name] for name in _NAMES) + (n_out, m_out)
        _PREPARED[key] = mx.compile(run)
    *arrays, n, m = _PREPARED[key](q, k, v, i, f, *state, *([mask] if mask is not None else []))
    return dict(zip(_NAMES, arrays)), n, m


PREP_MODE = "compiled"  # or "eager": the preparation without mx.compile (benchmarks/diagnose_mma_case.py compares them)


def _prepare_operands(q, k, v, i, f, state, mask, L: int, eps: float, tile_dv: int):
    if PREP_MODE == "eager":
        return _operands(q, k, v, i, f, state, mask, L, eps, tile_dv)
    return _operands_compiled(q, k, v, i, f, state, mask, L, eps, tile_dv)


def _make_chunkwise(make_kernel=None, precise=None):
    """The tensor-core chunkwise kernel; ``make_kernel()`` may supply the launch (the tests run the same body on
    the CPU this way) and ``precise`` pin 3xTF32 on or off (default: ``precise_by_default()`` at call time)."""
    make_kernel = make_kernel or _cuda_kernel

    def launch(q, k, v, i, f, state, L, eps, mask):
        B, NH, S, DK = q.shape
        DV, dt, tile = v.shape[-1], v.dtype, TILE_DV
        ops, n, m = _prepare_operands(q, k, v, i, f, state, mask, L, eps, tile)
        BH, NC, Lp, DKp = ops["q"].shape
        DVp = ops["vT"].shape[2]
        prec = precise_by_default() if precise is None else precise
        h, C = make_kernel()(
            inputs=[ops[name] for name in _NAMES] + [mx.array([NC, DKp, DVp, Lp], mx.int32)],
            template=[("T", dt), ("PRECISE", int(bool(prec)))],
            grid=(THREADS * (DVp // tile), BH, 1), threadgroup=(THREADS, 1, 1),
            output_shapes=[(BH, NC, Lp, DVp), (BH, DKp, DVp)], output_dtypes=[dt, mx.float32])
        h = h[:, :, :L, :DV].reshape(B, NH, S, DV)
        return h, (C[:, :DK, :DV].reshape(B, NH, DK, DV), n, m)

    def chunkwise(q, k, v, i, f, state=None, *, chunk_size=64, eps=1e-6, mask=None):
        B, NH, S, DK = q.shape
        DV = v.shape[-1]
        if int(chunk_size) < 1:
            raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
        if S == 0 or DK > MAX_DK:  # nothing to launch, or more key dims than the shared state slice holds
            return mlstm_chunkwise_native(q, k, v, i, f, state, chunk_size=chunk_size, eps=eps, mask=mask)
        L = min(int(chunk_size), MAX_CHUNK, S)
        NC = math.ceil(S / L)
        pad = NC * L - S
        dt = v.dtype
        q, k = q.astype(dt), k.astype(dt)
        if mask is not None:
            mask = mask.astype(mx.bool_)
        if pad:  # padded tail positions are masked tokens: no state change, output dropped
            tail = mx.concatenate([mx.ones((B, S), mx.bool_), mx.zeros((B, pad), mx.bool_)], axis=1)
            mask = tail if mask is None else mx.concatenate([mask, mx.zeros((B, pad), mx.bool_)], axis=1)
            zpad = lambda a: mx.pad(a, [(0, 0), (0, 0), (0, pad)] + [(0, 0)] * (a.ndim - 3))  # noqa: E731
            q, k, v, i, f = zpad(q), zpad(k), zpad(v), zpad(i), zpad(f)
        if state is None:
            state = (mx.zeros((B, NH, DK, DV), mx.float32), mx.zeros((B, NH, DK), mx.float32), mx.zeros((B, NH), mx.float32))
        state = tuple(a.astype(mx.float32) for a in state)
        seg = SEGMENT_CHUNKS * L
        hs = []
        for s0 in range(0, NC * L, seg):  # long inputs: launches of SEGMENT_CHUNKS chunks, the state carried across
            part = slice(s0, min(NC * L, s0 + seg))
            h, state = launch(q[:, :, part], k[:, :, part], v[:, :, part], i[:, :, part], f[:, :, part], state, L, eps,
                              None if mask is None else mask[:, part])
            hs.append(h)
        h = hs[0] if len(hs) == 1 else mx.concatenate(hs, axis=2)
        return h[:, :, :S], state

    chunkwise.__doc__ = (f"Chunkwise forward on CUDA tensor cores (one launch per {SEGMENT_CHUNKS} chunks; TF32, or "
                         f"3xTF32 under MLX_ENABLE_TF32=0); chunks of at most {MAX_CHUNK} tokens; more than {MAX_DK} key dims per "
                         "head run the native kernel.")
    return chunkwise


# The first-use check's bound per precision, relative to max(1, max |native|). 3xTF32 (with MLX's own float32
# matmuls exact, MLX_ENABLE_TF32=0) is float32: the fused kernels' 1e-4. Under TF32 every operand, including those
# of MLX's matmuls that prepare P, is rounded to 11 significant bits: 3e-3 measured on an H100 for the check's
# inputs (5e-4 to 7e-4 for the kernel's own rounding, emulated on the CPU with exact MLX matmuls).
TOLERANCE = {True: 1e-4, False: 1e-2}
_verified: dict[str, bool] = {}


def self_check(backend: str = "cuda", make_kernel=None, precise=None) -> bool:
    """The kernel against the native one (on the CPU, exact float32) on small random inputs: partial value
    tiles, DK not a multiple of 8, a padded last chunk, a mask, an incoming state, several chunks; in the
    precision that will run, at that precision's bound."""
    prec = precise_by_default() if precise is None else precise
    return _check(backend, make_kernel, bool(prec))


def _check(backend: str, make_kernel, precise: bool) -> bool:
    fn = _make_chunkwise(make_kernel, precise=precise)
    shapes = ((2, 2, 37, 44, 40, 16), (1, 1, 130, 64, 96, 64))
    errors = lambda: chunkwise_error(fn, shapes)  # noqa: E731

    tag = "3xtf32" if precise else "tf32"
    return check_once(_verified, f"{backend}-{tag}", f"chunkwise ({tag} tensor cores)", errors, tolerance=TOLERANCE[precise])


# Measured on an H100 (7B heads, bf16, TF32; bench_kernel.py, one run): 1.39 / 2.19 / 5.31 / 20.5 ms at 1k / 4k / 16k
# / 64k tokens against 1.11 / 2.01 / 5.26 / 18.5 ms for the compiled native kernel. The launch itself took 0.87 ms
# at 4k (ncu); the rest is the MLX preparation (~65 small launches). So it ranks just below the compiled kernel
# and runs where a spec or override names it; it keeps no per-chunk states, so its memory does not grow with the
# prefill segment.
PRIORITY = 4

register_kernel(KernelInfo(
    "mlstm", "chunkwise", "cuda_mma_chunkwise", _make_chunkwise(), backend="cuda", devices=frozenset({"gpu"}),
    dtypes=frozenset({"float32", "bfloat16", "float16"}), priority=PRIORITY, differentiable=False,
    reference=mlstm_chunkwise_native,
    is_available=lambda: backend_present("cuda") and self_check("cuda"),
    doc="CUDA tensor-core chunkwise forward (one launch, TF32 or 3xTF32 per MLX_ENABLE_TF32)"))
