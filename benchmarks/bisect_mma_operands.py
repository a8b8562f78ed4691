"""Which step of the tensor-core kernel's operand preparation reads memory it never wrote? The preparation
(mma_chunkwise._operands and native._prepare), step by step on a failing property case: each step on the
GPU, as one lazy graph of every step up to it (so MLX reuses buffers as in the real preparation), right after
NaN-poisoning the allocator cache, against the same graph on the CPU. The first step that differs is where
the preparation goes wrong. One JSON object.

    python benchmarks/bisect_mma_operands.py
"""
from __future__ import annotations

import mlx.core as mx
import numpy as np
from common import emit
from probe_gpu_ops import poison

from xlstm_metal.kernels.mlstm.native import _MAX_EXP, _entry_log_decay, _segment_sums
from xlstm_metal.testing.strategies import MLSTMCase

rows = []
STEPS = []  # (name, fn, input names): the preparation as a list, so any prefix can be run lazily as one graph


def op(name, fn, *args):
    STEPS.append((name, fn, args))
    return name


def compare(want, got):
    w, g = np.array(want).astype(np.float64), np.array(got).astype(np.float64)
    fin = np.isfinite(w)
    same_nonfinite = np.array_equal(np.isfinite(g), fin) and np.array_equal(g[~fin], w[~fin])
    err = float(np.abs(g[fin] - w[fin]).max() / max(1.0, np.abs(w[fin]).max())) if fin.any() else 0.0
    return err if same_nonfinite else "nonfinite"  # relative to max(1, max |CPU value|)


def run_prefix(inputs, upto: int):
    """Steps 0..upto from the inputs, lazily, as one graph; returns the last step's value (nothing else is
    kept alive, so MLX may reuse intermediate buffers the way it does in the real preparation)."""
    env = dict(inputs)
    for name, fn, args in STEPS[: upto + 1]:
        env[name] = fn(*[env[a] if isinstance(a, str) else a for a in args])
    out = env[STEPS[upto][0]]
    del env
    return out


def main():
    case = MLSTMCase(batch=1, heads=1, seq_len=114, dk=14, dv=7, seed=1690280743, gate_style="normal",
                     with_state=False, with_mask=True)
    qn, kn, vn, i_n, fn_, _, maskn = case.arrays()
    a = lambda x: mx.array(np.asarray(x, np.float32))  # noqa: E731
    B, NH, S, DK = qn.shape
    DV, L, NC = vn.shape[-1], 64, 2
    pad = NC * L - S
    mask = mx.concatenate([mx.array(maskn), mx.zeros((B, pad), mx.bool_)], axis=1)
    zp = lambda x: mx.pad(a(x), [(0, 0), (0, 0), (0, pad)] + [(0, 0)] * (np.ndim(x) - 3))  # noqa: E731
    q, k, v, i, f = (zp(x) for x in (qn, kn, vn, i_n, fn_))
    mx.eval(q, k, v, i, f, mask)
    inputs = dict(q=q, k=k, v=v, i=i, f=f, mask=mask, n0=mx.zeros((B, NH, DK)), m0=mx.zeros((B, NH)))
    q, k, v, i, f, mask, n0, m0 = "q", "k", "v", "i", "f", "mask", "n0", "m0"  # steps refer to values by name
    f32 = mx.float32
    qf = op("q scale", lambda q: q.astype(f32) * (DK ** -0.5), q)
    log_f = op("logsigmoid", lambda f: -mx.logaddexp(mx.array(0.0, f32), -f.astype(f32)), f)
    keep = op("keep", lambda m: m.astype(mx.bool_)[:, None, :], mask)
    log_f = op("mask log_f", lambda k_, lf: mx.where(k_, lf, 0.0), keep, log_f)
    ig = op("mask i", lambda k_, i: mx.where(k_, i, -1e30), keep, i)
    qc = op("qc", lambda x: x.reshape(B, NH, NC, L, DK), qf)
    kc = op("kc", lambda x: x.reshape(B, NH, NC, L, DK), k)
    ig = op("ig", lambda x: x.reshape(B, NH, NC, L), ig)
    log_f = op("log_f", lambda x: x.reshape(B, NH, NC, L), log_f)
    b = op("b cumsum", lambda x: mx.cumsum(x, axis=-1), log_f)
    g = op("g", lambda x: x[..., -1], b)
    seg_in = op("seg_in", _segment_sums, log_f)
    w_end = op("w_end", lambda s, i: s[..., L - 1, :] + i, seg_in, ig)
    m_loc = op("m_loc", lambda w: mx.max(w, axis=-1), w_end)
    n_loc = op("n_loc", lambda kc, w, m: mx.sum(kc * mx.exp(w - m[..., None])[..., None], axis=-2), kc, w_end, m_loc)
    w0 = op("w0", lambda g, m0: _entry_log_decay(g) + m0[..., None], g, m0)  # was cumsum(g[..., :-1]): the first bad step
    seg = op("seg g", _segment_sums, g)
    w = op("w", lambda seg, ml: mx.concatenate([mx.full(seg.shape[:-2] + (1, NC), -mx.inf), seg[..., :-1, :] + ml[..., None, :]], axis=-2), seg, m_loc)
    m_in = op("m_in", lambda w0, w: mx.maximum(w0, mx.max(w, axis=-1)), w0, w)
    A = op("A", lambda w, m: mx.exp(w - m[..., None]), w, m_in)
    n_in = op("A @ n_loc", lambda A, n: A @ n, A, n_loc)
    n_in = op("n_in + a0 n0", lambda n_in, w0, m_in, n0: n_in + mx.exp(w0 - m_in)[..., None] * n0[:, :, None], n_in, w0, m_in, n0)
    D = op("D", lambda s, i: s + i[..., None, :], seg_in, ig)
    a_in = op("a_in", lambda b, m: b + m[..., None], b, m_in)
    m_t = op("m_t", lambda a_, D: mx.maximum(a_, mx.max(D, axis=-1)), a_in, D)
    QK = op("q k^T", lambda q, k: q @ k.swapaxes(-1, -2), qc, kc)
    P = op("P", lambda QK, D, m: QK * mx.exp(D - m[..., None]), QK, D, m_t)
    s_in = op("s_in", lambda a_, m: mx.exp(a_ - m), a_in, m_t)
    qn_ = op("qn", lambda P, s, q, n: mx.sum(P, axis=-1) + s * mx.sum(q * n[..., None, :], axis=-1), P, s_in, qc, n_in)
    den = op("denom", lambda qn_, m: mx.maximum(mx.abs(qn_), mx.exp(mx.minimum(-m, _MAX_EXP))) + 1e-6, qn_, m_t)
    ri = op("r_intra", lambda d: 1.0 / d, den)
    op("r_inter", lambda s, r: s * r * (DK ** -0.5), s_in, ri)
    op("mask r", lambda m, r: mx.where(m.astype(mx.bool_).reshape(B, 1, NC, L), r, 0.0), mask, ri)
    m_next = op("m_next", lambda g, m, ml: mx.maximum(g + m, ml), g, m_in, m_loc)
    op("decay", lambda g, m, mn: mx.exp(g + m - mn), g, m_in, m_next)
    ew = op("ew", lambda w, mn: mx.exp(w - mn[..., None]), w_end, m_next)
    op("kT", lambda kc, ew: (kc * ew[..., None]).swapaxes(-1, -2).reshape(B * NH, NC, DK, L), kc, ew)
    op("vT", lambda v: v.reshape(B * NH, NC, L, DV).swapaxes(-1, -2), v)
    for upto, (name, _, _) in enumerate(STEPS):
        with mx.stream(mx.cpu):
            want = run_prefix(inputs, upto)
            mx.eval(want)
        errs = []
        for _ in range(3):
            poison(24)
            got = run_prefix(inputs, upto)
            mx.eval(got)
            errs.append(compare(want, got))
        rows.append({"step": name, "errors": errs})
    bad = [r for r in rows if any(e == "nonfinite" or e > 1e-4 for e in r["errors"])]
    emit({"device": str(mx.default_device()), "first_bad": bad[0]["step"] if bad else None, "bad": bad, "rows": rows})


if __name__ == "__main__":
    main()
