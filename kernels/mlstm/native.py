"""The mLSTM cell in native MLX ops, float32 math (chunkwise, sequence, step): the fused kernels' references."""
from __future__ import annotations

import math

import mlx.core as mx

from ..fast_math import exp
from ..ops import soft_cap
from ..registry import KernelInfo, register_kernel

_NEG = -1e30  # "minus infinity" for masked input gates that keeps every difference finite
_MAX_EXP = 80.0  # exp(-m) is bounded by exp(80) (finite in float32); real tokens have m >= -gate_cap


def _prepare(q, k, v, i, f, state, mask):
    B, NH, S, DK = q.shape
    DV = v.shape[-1]
    f32 = mx.float32
    q = q.astype(f32) * (DK ** -0.5)
    k, v = k.astype(f32), v.astype(f32)
    log_f = -mx.logaddexp(mx.array(0.0, f32), -f.astype(f32))  # logsigmoid(f)
    i = i.astype(f32)
    if mask is not None:
        keep = mask.astype(mx.bool_)[:, None, :]
        log_f = mx.where(keep, log_f, 0.0)
        i = mx.where(keep, i, _NEG)
    if state is None:
        C = mx.zeros((B, NH, DK, DV), f32)
        n = mx.zeros((B, NH, DK), f32)
        m = mx.zeros((B, NH), f32)
    else:
        C, n, m = (a.astype(f32) for a in state)
    return q, k, v, i, log_f, C, n, m


def _step(q, k, v, i, log_f, C, n, m, eps):
    """One token for all heads: q, k [B,NH,DK] (q scaled), v [B,NH,DV], i, log_f [B,NH]."""
    m_new = mx.maximum(log_f + m, i)
    f_act = exp(log_f + m - m_new)
    i_act = exp(i - m_new)
    C = f_act[..., None, None] * C + i_act[..., None, None] * (k[..., :, None] * v[..., None, :])
    n = f_act[..., None] * n + i_act[..., None] * k
    num = (q[..., None, :] @ C)[..., 0, :]
    qn = mx.sum(q * n, axis=-1)
    denom = mx.maximum(mx.abs(qn), exp(mx.minimum(-m_new, _MAX_EXP))) + eps
    return num / denom[..., None], C, n, m_new


def _segment_sums(x: mx.array) -> mx.array:
    """``out[..., c, j] = sum(x[..., j+1 : c+1])`` for ``j <= c``, else ``-inf``; short sums keep float32 precision."""
    T = x.shape[-1]
    if T == 1:  # no scan over a length-1 axis (see _running_sum)
        return mx.zeros(x.shape + (1,), x.dtype)
    rows = mx.broadcast_to(x[..., :, None], x.shape + (T,))  # [..., k, j] = x_k
    rows = mx.where(mx.tril(mx.ones((T, T), mx.bool_), k=-1), rows, 0.0)  # keep k > j
    sums = mx.cumsum(rows, axis=-2)  # [..., c, j] = sum over j < k <= c
    return mx.where(mx.tril(mx.ones((T, T), mx.bool_)), sums, -mx.inf)


def _running_sum(x: mx.array, inclusive: bool = True, reverse: bool = False) -> mx.array:
    """Cumulative sum over the last axis. A length-1 axis is written out and the scan reads a contiguous copy:
    MLX-CUDA (0.32.4) mis-scans strided views and length-1 axes inside lazy graphs."""
    if x.shape[-1] == 1:
        return x if inclusive else mx.zeros_like(x)
    return mx.cumsum(mx.contiguous(x), axis=-1, inclusive=inclusive, reverse=reverse)


# Chunks one call takes: entry states come from one matmul over all earlier chunks, quadratic in their number.
MAX_CHUNKS = 128


def _chunks(q, k, v, i, b, seg_in, state, eps, state_is_zero):
    """Outputs of G chunks and the state after them, given the state (C, n, m) entering the first. Entry states
    are log-space weighted sums of earlier chunks' contributions, stabilised by the row max (= the recurrent m); the
    incoming state reaches outputs through one ``q @ C`` (skipped when zero). The exit state is the last entry state
    stepped over its chunk, a fresh array that keeps none of the group's big tensors alive."""
    C, n, m = state
    B, NH, G, L, DK = q.shape
    DV = v.shape[-1]
    g = b[..., -1]  # whole-chunk log forget [B,NH,G]

    # What each chunk adds to the state on its own, stabilised by its own max.
    w_end = seg_in[..., L - 1, :] + i  # [B,NH,G,L] log weight of token s in the chunk-end state
    m_loc = mx.max(w_end, axis=-1)
    ke = k * exp(w_end - m_loc[..., None])[..., None]
    C_loc = ke.swapaxes(-1, -2) @ v  # [B,NH,G,DK,DV]
    n_loc = mx.sum(ke, axis=-2)  # [B,NH,G,DK]

    # Log weights, in the state entering chunk c, of the incoming state (w0) and of chunk j < c (w).
    w0 = _running_sum(g, inclusive=False) + m[..., None]  # sum(g[..., :c]): the incoming state's decay so far
    if G > 1:
        seg = _segment_sums(g)  # [B,NH,G,G]: sum of g over chunks j+1..c, -inf for j > c
        w = mx.concatenate([mx.full(seg.shape[:-2] + (1, G), -mx.inf), seg[..., :-1, :] + m_loc[..., None, :]], axis=-2)
        m_in = mx.maximum(w0, mx.max(w, axis=-1))
        A = exp(w - m_in[..., None])
        C_prev = (A @ C_loc.reshape(B, NH, G, DK * DV)).reshape(B, NH, G, DK, DV)
        n_prev = A @ n_loc
    else:  # no earlier chunk: keeps a degenerate K=1 matmul out of the graph (intermittent NaN on MLX-CUDA 0.32.4)
        m_in, C_prev, n_prev = w0, None, None
    a0 = exp(w0 - m_in)  # weight of the incoming state

    # Outputs: inside the chunk (parallel form) plus the entry state's readout.
    D = seg_in + i[..., None, :]  # [B,NH,G,L,L] log weight of token s in h_t (-inf for s > t)
    a_in = b + m_in[..., None]  # log weight of the entry state at position t
    m_t = mx.maximum(a_in, mx.max(D, axis=-1))
    P = (q @ k.swapaxes(-1, -2)) * exp(D - m_t[..., None])
    num, qn = P @ v, mx.sum(P, axis=-1)
    inter, qn_in = None, None
    if C_prev is not None:
        inter, qn_in = q @ C_prev, mx.sum(q * n_prev[..., None, :], axis=-1)
    if not state_is_zero:
        inc = (q.reshape(B, NH, G * L, DK) @ C).reshape(B, NH, G, L, DV) * a0[..., None, None]
        inc_n = mx.sum(q * n[:, :, None, None, :], axis=-1) * a0[..., None]
        inter = inc if inter is None else inter + inc
        qn_in = inc_n if qn_in is None else qn_in + inc_n
    if inter is not None:
        s_in = exp(a_in - m_t)
        num = num + s_in[..., None] * inter
        qn = qn + s_in * qn_in
    denom = mx.maximum(mx.abs(qn), exp(mx.minimum(-m_t, _MAX_EXP))) + eps
    h = num / denom[..., None]

    # Exit state: the last chunk's entry state, decayed over the chunk, plus the chunk's contribution.
    C_last = a0[..., -1, None, None] * C
    n_last = a0[..., -1, None] * n
    if C_prev is not None:
        C_last, n_last = C_last + C_prev[:, :, -1], n_last + n_prev[:, :, -1]
    m_last = m_in[..., -1]
    m_out = mx.maximum(g[..., -1] + m_last, m_loc[..., -1])
    fa, fb = exp(g[..., -1] + m_last - m_out), exp(m_loc[..., -1] - m_out)
    C_out = fa[..., None, None] * C_last + fb[..., None, None] * C_loc[:, :, -1]
    n_out = fa[..., None] * n_last + fb[..., None] * n_loc[:, :, -1]
    return h, (C_out, n_out, m_out)


def mlstm_step_native(q, k, v, i, f, state=None, *, chunk_size=64, eps=1e-6, mask=None):
    """One decoding step: S must be 1."""
    if q.shape[2] != 1:
        raise ValueError(f"the step kernel takes exactly one token, got seq_len {q.shape[2]}; use the sequence or "
                         f"chunkwise form")
    return mlstm_sequence_native(q, k, v, i, f, state, chunk_size=chunk_size, eps=eps, mask=mask)


def mlstm_step_native_capping_gates(q, k, v, i, f, state=None, *, chunk_size=64, eps=1e-6, mask=None,
                                    gate_soft_cap=None, gate_bias=None):
    """The native step with the fused step kernel's signature: ``gate_bias`` (b_i, b_f per head) added to the raw
    gate pre-activations, then ``gate_soft_cap * tanh(x / gate_soft_cap)``; the reference of its gradient."""
    if gate_bias is not None:
        i, f = i + gate_bias[0].reshape(1, -1, 1), f + gate_bias[1].reshape(1, -1, 1)
    if gate_soft_cap:  # (0, like None, caps nothing, as in the kernel)
        i, f = soft_cap(i, gate_soft_cap), soft_cap(f, gate_soft_cap)
    return mlstm_step_native(q, k, v, i, f, state, chunk_size=chunk_size, eps=eps, mask=mask)


def mlstm_sequence_native(q, k, v, i, f, state=None, *, chunk_size=64, eps=1e-6, mask=None):
    """A Python loop of recurrent steps (for short inputs); ``chunk_size`` is ignored."""
    out_dtype = v.dtype
    q, k, v, i, log_f, C, n, m = _prepare(q, k, v, i, f, state, mask)
    if q.shape[2] == 0:
        return mx.zeros(v.shape, out_dtype), (C, n, m)
    hs = []
    for t in range(q.shape[2]):
        h, C, n, m = _step(q[:, :, t], k[:, :, t], v[:, :, t], i[:, :, t], log_f[:, :, t], C, n, m, eps)
        hs.append(h)
    h = mx.stack(hs, axis=2)
    if mask is not None:
        h = mx.where(mask.astype(mx.bool_)[:, None, :, None], h, 0.0)
    return h.astype(out_dtype), (C, n, m)


def mlstm_chunkwise_native(q, k, v, i, f, state=None, *, chunk_size=64, eps=1e-6, mask=None):
    """Parallel inside chunks of ``chunk_size``, recurrent across them; cost quadratic in the chunk count."""
    out_dtype = v.dtype
    B, NH, S, DK = q.shape
    DV = v.shape[-1]
    if int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    if S == 0:
        return mlstm_sequence_native(q, k, v, i, f, state, eps=eps, mask=mask)
    if mask is not None:
        mask = mask.astype(mx.bool_)
    L = min(int(chunk_size), S)
    NC = math.ceil(S / L)
    pad = NC * L - S
    if pad:  # padded tail positions behave like masked tokens: no state change, output dropped
        tail = mx.concatenate([mx.ones((B, S), mx.bool_), mx.zeros((B, pad), mx.bool_)], axis=1)
        mask = tail if mask is None else mx.concatenate([mask, mx.zeros((B, pad), mx.bool_)], axis=1)
        zpad = lambda a: mx.pad(a, [(0, 0), (0, 0), (0, pad)] + [(0, 0)] * (a.ndim - 3))  # noqa: E731
        q, k, v, i, f = zpad(q), zpad(k), zpad(v), zpad(i), zpad(f)
    q, k, v, i, log_f, C, n, m = _prepare(q, k, v, i, f, state, mask)

    q = q.reshape(B, NH, NC, L, DK)
    k = k.reshape(B, NH, NC, L, DK)
    v = v.reshape(B, NH, NC, L, DV)
    i = i.reshape(B, NH, NC, L)
    log_f = log_f.reshape(B, NH, NC, L)
    b = _running_sum(log_f)  # log of the forget product from chunk start to t
    seg_in = _segment_sums(log_f)  # [B,NH,NC,L,L]: log forget between s (excl.) and t (incl.)

    h, (C, n, m) = _chunks(q, k, v, i, b, seg_in, (C, n, m), eps, state_is_zero=state is None)
    h = h.reshape(B, NH, NC * L, DV)
    if mask is not None:
        h = mx.where(mask[:, None, :, None], h, 0.0)
    return h[:, :, :S].astype(out_dtype), (C, n, m)


_DOC = "native MLX ops, float32 math"
_FORMS = (("chunkwise", mlstm_chunkwise_native), ("sequence", mlstm_sequence_native), ("step", mlstm_step_native))
for _form, _fn in _FORMS:
    register_kernel(KernelInfo(family="mlstm", form=_form, name=f"native_{_form}", fn=_fn, backend="native", priority=0,
                               max_chunks=MAX_CHUNKS if _form == "chunkwise" else None, doc=f"{_form} form, {_DOC}"))
