"""The mLSTM cell in native MLX ops: chunkwise, sequence and step forms (the readable reference
implementations that fused kernels are checked against). Math in float32 whatever the input dtype.
"""
from __future__ import annotations

import math

import mlx.core as mx

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
    f_act = mx.exp(log_f + m - m_new)
    i_act = mx.exp(i - m_new)
    C = f_act[..., None, None] * C + i_act[..., None, None] * (k[..., :, None] * v[..., None, :])
    n = f_act[..., None] * n + i_act[..., None] * k
    num = (q[..., None, :] @ C)[..., 0, :]
    qn = mx.sum(q * n, axis=-1)
    denom = mx.maximum(mx.abs(qn), mx.exp(mx.minimum(-m_new, _MAX_EXP))) + eps
    return num / denom[..., None], C, n, m_new


def _segment_sums(x: mx.array) -> mx.array:
    """``out[..., c, j] = sum(x[..., j+1 : c+1])`` for ``j <= c``, ``-inf`` above the diagonal.

    Each entry is its own short cumulative sum rather than a difference of two long ones, so
    nearby chunks (which dominate) keep full float32 precision however long the sequence.
    """
    T = x.shape[-1]
    rows = mx.broadcast_to(x[..., :, None], x.shape + (T,))  # [..., k, j] = x_k
    rows = mx.where(mx.tril(mx.ones((T, T), mx.bool_), k=-1), rows, 0.0)  # keep k > j
    sums = mx.cumsum(rows, axis=-2)  # [..., c, j] = sum over j < k <= c
    return mx.where(mx.tril(mx.ones((T, T), mx.bool_)), sums, -mx.inf)


_GROUP = 128  # chunks whose entry states come from one closed-form matmul (its cost is quadratic in this)


def _entry_states_closed_form(C, n, m, C_loc, n_loc, m_loc, g):
    """States entering chunks 0..G-1 of a group, and the state after it, from the state (C, n, m)
    entering the group and each chunk's own contribution, in closed form: a weighted sum of the
    incoming state and of every earlier chunk's contribution. The weights are computed in log space
    and stabilised by their row max, which equals the recurrent stabiliser m.

    Returns ``(C_in, n_in, m_in), (C_out, n_out, m_out)``. The exit state is computed as its own
    array, not sliced out of an all-chunks tensor: a slice would keep that whole tensor (G+1 states,
    0.5 GB per 7B layer at 8k tokens) alive for as long as the state is kept, in every layer."""
    B, NH, G, DK, DV = C_loc.shape
    if G == 1:
        return _entry_states_one_chunk(C, n, m, C_loc[:, :, 0], n_loc[:, :, 0], m_loc[..., 0], g[..., 0])
    w0 = mx.concatenate([mx.zeros_like(g[..., :1]), mx.cumsum(g, axis=-1)], axis=-1) + m[..., None]  # [B,NH,G+1]
    seg = _segment_sums(g)  # [B,NH,G,G]: sum of g over chunks c'+1..c, -inf for c' > c
    w = mx.concatenate([mx.full(seg.shape[:-2] + (1, G), -mx.inf), seg + m_loc[..., None, :]], axis=-2)  # [B,NH,G+1,G]
    m_all = mx.maximum(w0, mx.max(w, axis=-1))
    A = mx.exp(w - m_all[..., None])
    a0 = mx.exp(w0 - m_all)
    C_flat = C_loc.reshape(B, NH, G, DK * DV)

    def rows(r):  # the states of rows r (a slice of the G+1 rows) as fresh arrays
        C_r = (A[..., r, :] @ C_flat).reshape(B, NH, -1, DK, DV) + a0[..., r, None, None] * C[:, :, None]
        n_r = A[..., r, :] @ n_loc + a0[..., r, None] * n[:, :, None]
        return C_r, n_r, m_all[..., r]

    C_in, n_in, m_in = rows(slice(0, G))
    C_out, n_out, m_out = rows(slice(G, G + 1))
    return (C_in, n_in, m_in), (C_out[:, :, 0], n_out[:, :, 0], m_out[..., 0])


def _entry_states_one_chunk(C, n, m, C_loc, n_loc, m_loc, g):
    """The closed form for a group of one chunk, written out: entry state = incoming state, exit state
    = the stabilised sum of the decayed incoming state and the chunk's own contribution.

    Besides being cheaper, this keeps the degenerate shapes of the general form (a matmul with an inner
    dimension of 1, 1x1 segment sums) out of the graph: on MLX-CUDA 0.32.4 a 7B-shape prefill whose
    chunks formed groups of one chunk gave intermittent NaN / changing logits (issue 4), which
    ``benchmarks/repeat_runs.py`` shows gone with this path."""
    m1 = mx.maximum(g + m, m_loc)
    a, b = mx.exp(g + m - m1), mx.exp(m_loc - m1)
    C1 = a[..., None, None] * C + b[..., None, None] * C_loc
    n1 = a[..., None] * n + b[..., None] * n_loc
    return (C[:, :, None], n[:, :, None], m[..., None]), (C1, n1, m1)


def _chunk_entry_states(C, n, m, C_loc, n_loc, m_loc, g):
    """(C_in, n_in, m_in) entering each of the NC chunks, and the final state. The closed form costs
    O(G^2) per group, so long sequences of small chunks loop over groups of ``_GROUP`` chunks
    (``max(_GROUP, sqrt(NC))``, bounding both the loop length and the matrix size)."""
    NC = g.shape[-1]
    group = max(_GROUP, math.isqrt(NC - 1) + 1)
    Cs, ns, ms = [], [], []
    for s in range(0, NC, group):
        e = min(NC, s + group)
        (C_in, n_in, m_in), (C, n, m) = _entry_states_closed_form(C, n, m, C_loc[:, :, s:e], n_loc[:, :, s:e],
                                                                  m_loc[..., s:e], g[..., s:e])
        Cs.append(C_in)
        ns.append(n_in)
        ms.append(m_in)
    cat = lambda xs, axis: xs[0] if len(xs) == 1 else mx.concatenate(xs, axis=axis)  # noqa: E731
    return cat(Cs, 2), cat(ns, 2), cat(ms, -1), (C, n, m)


def mlstm_step_native(q, k, v, i, f, state=None, *, chunk_size=64, eps=1e-6, mask=None):
    """One decoding step: S must be 1."""
    if q.shape[2] != 1:
        raise ValueError(f"the step kernel takes exactly one token, got seq_len {q.shape[2]}; use the sequence or chunkwise form")
    return mlstm_sequence_native(q, k, v, i, f, state, chunk_size=chunk_size, eps=eps, mask=mask)


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
    """Parallel inside chunks of ``chunk_size``, recurrent across chunks; any length, any chunk size."""
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
    b = mx.cumsum(log_f, axis=-1)  # log of the forget product from chunk start to t
    g = b[..., -1]  # whole-chunk log forget [B,NH,NC]
    seg_in = _segment_sums(log_f)  # [B,NH,NC,L,L]: log forget between s (excl.) and t (incl.)

    # What each chunk adds to the state on its own, stabilised by its own max.
    w_end = seg_in[..., L - 1, :] + i  # [B,NH,NC,L] log weight of token s in the chunk-end state
    m_loc = mx.max(w_end, axis=-1)
    e_end = mx.exp(w_end - m_loc[..., None])
    C_loc = (k * e_end[..., None]).swapaxes(-1, -2) @ v  # [B,NH,NC,DK,DV]
    n_loc = mx.sum(k * e_end[..., None], axis=-2)  # [B,NH,NC,DK]

    # The state entering every chunk (and the final state): closed form inside groups of chunks, a short
    # loop across groups (one group unless the sequence has more than _GROUP chunks).
    C_in, n_in, m_in, (C, n, m) = _chunk_entry_states(C, n, m, C_loc, n_loc, m_loc, g)

    # Outputs of all chunks at once.
    D = seg_in + i[..., None, :]  # [B,NH,NC,L,L] log weight of token s in h_t (-inf for s > t)
    a_in = b + m_in[..., None]  # log weight of the incoming state at position t
    m_t = mx.maximum(a_in, mx.max(D, axis=-1))
    W = mx.exp(D - m_t[..., None])
    P = (q @ k.swapaxes(-1, -2)) * W
    s_in = mx.exp(a_in - m_t)
    num = P @ v + s_in[..., None] * (q @ C_in)
    qn = mx.sum(P, axis=-1) + s_in * mx.sum(q * n_in[..., None, :], axis=-1)
    denom = mx.maximum(mx.abs(qn), mx.exp(mx.minimum(-m_t, _MAX_EXP))) + eps
    h = (num / denom[..., None]).reshape(B, NH, NC * L, DV)
    if mask is not None:
        h = mx.where(mask[:, None, :, None], h, 0.0)
    return h[:, :, :S].astype(out_dtype), (C, n, m)


_DOC = "native MLX ops, float32 math"
for _form, _fn in (("chunkwise", mlstm_chunkwise_native), ("sequence", mlstm_sequence_native), ("step", mlstm_step_native)):
    register_kernel(KernelInfo(family="mlstm", form=_form, name=f"native_{_form}", fn=_fn, backend="native", priority=0,
                               doc=f"{_form} form, {_DOC}"))
