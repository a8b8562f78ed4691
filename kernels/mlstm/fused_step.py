"""Fused mLSTM decode step: gates, state update and readout in one launch, one text for CUDA and Metal."""
from __future__ import annotations

import mlx.core as mx

from ..gpu import Fused, GpuKernel, constant, native_on_cpu, random_normal, relative_error
from .native import mlstm_step_native, mlstm_step_native_capping_gates

# A threadgroup per (batch·head, 32 value columns x): thread (x, y) updates rows y, y + RY, ... of column j, loading
# eight before any store (C_out may alias C_). Each group forms q·n itself, the first also writes n. T: q/k/v dtype.
_BODY = """
    constexpr int RY = 8;
    const int tid = TID;
    const int x = tid % 32;
    const int y = tid / 32;
    const int j = GX * 32 + x;
    const int bh = GY;
    const int b = bh / NH;
    SHARED float part[RY * 33];
    SHARED float qnp[RY];
    SHARED float qs[DK];
    SHARED float ks[DK];
    const float keep = keep_[b];
    const float m_old = m_[bh];
    const float cap = cap_[0];  // the gates' soft cap (cap * tanh(x / cap)); 0: none
    const float f_in = static_cast<float>(f_[bh]) + (HAS_GATE_BIAS ? static_cast<float>(bf_[bh % NH]) : 0.0f);
    const float i_in = static_cast<float>(i_[bh]) + (HAS_GATE_BIAS ? static_cast<float>(bi_[bh % NH]) : 0.0f);
    const float f_raw = cap > 0.0f ? cap * tanh(f_in / cap) : f_in;
    const float i_raw = cap > 0.0f ? cap * tanh(i_in / cap) : i_in;
    const float log_f = (f_raw < 0.0f ? f_raw : 0.0f) - log(1.0f + exp(-fabs(f_raw)));
    const float m_new = keep > 0.0f ? fmax(log_f + m_old, i_raw) : m_old;
    const float fa = keep > 0.0f ? exp(log_f + m_old - m_new) : 1.0f;
    const float ia = keep > 0.0f ? exp(i_raw - m_new) : 0.0f;
    const float scale = rsqrt(static_cast<float>(DK));
    for (int r = tid; r < DK; r += 32 * RY) {  // q (scaled) and k staged once per group, not read per row and thread
        qs[r] = static_cast<float>(q_[bh * DK + r]) * scale;
        ks[r] = static_cast<float>(k_[bh * DK + r]);
    }
    BARRIER;
    const bool col = j < DV;
    const float vj = col ? static_cast<float>(v_[bh * DV + j]) : 0.0f;
    float num = 0.0f;
    float qn = 0.0f;
    for (int r0 = y; r0 < DK; r0 += 8 * RY) {  // eight of this thread's rows per pass
        float c_old[8];
        float n_old[8];
        UNROLL
        for (int u = 0; u < 8; ++u) {  // all loads of the pass before any store (C_out may alias C_)
            const int r = r0 + RY * u;
            c_old[u] = (col && r < DK) ? C_[((long)bh * DK + r) * DV + j] : 0.0f;
            n_old[u] = (x == 0 && r < DK) ? n_[bh * DK + r] : 0.0f;
        }
        UNROLL
        for (int u = 0; u < 8; ++u) {
            const int r = r0 + RY * u;
            if (r < DK) {
                const float qr = qs[r];
                const float kr = ks[r];
                if (col) {
                    const float c = fa * c_old[u] + ia * kr * vj;
                    C_out[((long)bh * DK + r) * DV + j] = c;
                    num += qr * c;
                }
                if (x == 0) {
                    const float nr = fa * n_old[u] + ia * kr;
                    qn += qr * nr;
                    if (GX == 0) n_out[bh * DK + r] = nr;
                }
            }
        }
    }
    part[y * 33 + x] = num;
    if (x == 0) qnp[y] = qn;
    BARRIER;
    if (y == 0) {
        float total = 0.0f;
        float qn_all = 0.0f;
        for (int r = 0; r < RY; ++r) {
            total += part[r * 33 + x];
            qn_all += qnp[r];
        }
        const float denom = fmax(fabs(qn_all), exp(fmin(-m_new, 80.0f))) + eps_[0];
        if (col) h_out[bh * DV + j] = static_cast<T>(keep > 0.0f ? total / denom : 0.0f);
        if (j == 0) m_out[bh] = m_new;
    }
"""
KERNEL = GpuKernel("xlstm_mlstm_step", _BODY,
                   ("q_", "k_", "v_", "i_", "f_", "C_", "n_", "m_", "keep_", "eps_", "cap_", "bi_", "bf_"),
                   ("h_out", "C_out", "n_out", "m_out"))
THREADS = 32 * 8  # 32 value columns x the text's RY row slices


def _make(backend: str, kernel=None):
    """The step kernel for ``backend``; tests pass ``kernel`` to run the same text on the CPU."""

    def step(q, k, v, i, f, state=None, *, chunk_size=64, eps=1e-6, mask=None, gate_soft_cap=None, gate_bias=None):
        """``gate_soft_cap``: i and f are raw pre-activations, capped here (two launches fewer per block);
        ``gate_bias``: (b_i, b_f), one value per head each, added here before the cap."""
        B, NH, S, DK = q.shape
        if S != 1:
            raise ValueError(f"the fused step kernel takes exactly one token, got seq_len {S}")
        DV = v.shape[-1]
        if state is None:
            state = (mx.zeros((B, NH, DK, DV)), mx.zeros((B, NH, DK)), mx.zeros((B, NH)))  # float32 zeros
        C, n, m = (a.astype(mx.float32) for a in state)
        dt = v.dtype
        keep = mx.ones((B,), mx.float32) if mask is None else mask.reshape(B).astype(mx.float32)
        bias = (keep, keep) if gate_bias is None else tuple(g.astype(dt).reshape(NH) for g in gate_bias)
        h, C, n, m = (kernel or KERNEL.compiled(backend))(
            inputs=[q.astype(dt).reshape(B * NH, DK), k.astype(dt).reshape(B * NH, DK), v.reshape(B * NH, DV),
                    i.astype(dt).reshape(B * NH), f.astype(dt).reshape(B * NH), C, n, m, keep,
                    constant((float(eps),), mx.float32), constant((float(gate_soft_cap or 0.0),), mx.float32), *bias],
            template=[("T", dt), ("DK", DK), ("DV", DV), ("NH", NH), ("HAS_GATE_BIAS", int(gate_bias is not None))],
            grid=(THREADS * -(-DV // 32), B * NH, 1), threadgroup=(THREADS, 1, 1),
            output_shapes=[(B * NH, DV), (B, NH, DK, DV), (B, NH, DK), (B, NH)],
            output_dtypes=[dt, mx.float32, mx.float32, mx.float32])
        return h.reshape(B, NH, 1, DV), (C, n, m)
    return step


def check_errors(fn, dtype=mx.float32) -> float:
    """Worst relative error of ``fn`` against the native step on the CPU (a random state, one row masked)."""
    normal = random_normal(dtype)
    B, NH, DK, DV = 2, 3, 8, 20
    q, k, v = normal(B, NH, 1, DK), normal(B, NH, 1, DK), normal(B, NH, 1, DV)
    i, f = normal(B, NH, 1, scale=3.0), normal(B, NH, 1, scale=3.0)
    state = (normal(B, NH, DK, DV), normal(B, NH, DK), normal(B, NH))
    mask = mx.array([[True], [False]])
    return relative_error(fn(q, k, v, i, f, state, mask=mask),
                          native_on_cpu(mlstm_step_native, q, k, v, i, f, state, mask=mask))


FUSED = Fused("mLSTM step", _make, check_errors)
FUSED.register("mlstm", "step", "step", "decode step (gates + state update + readout in one launch)",
               dtypes=frozenset({"float32", "bfloat16", "float16"}), priority=10, caps_gates=True,
               reference=mlstm_step_native_capping_gates)
