"""The mLSTM recurrence in float64 numpy, written for clarity: the ground truth for every kernel. Same signature
as the MLX kernels (see ``__init__``), numpy in and out; ``chunk_size`` is ignored; masked steps are skipped."""
from __future__ import annotations

import numpy as np


def _logsigmoid(x: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -x)


def mlstm_reference(q, k, v, i, f, state=None, *, chunk_size=64, eps=1e-6, mask=None, dtype=np.float64):
    """``dtype=np.float32`` runs the same loop in float32: the accuracy floor any float32 kernel faces."""
    q, k, v, i, f = (np.asarray(a, dtype=dtype) for a in (q, k, v, i, f))
    B, NH, S, DK = q.shape
    DV = v.shape[-1]
    if state is None:
        C, n, m = np.zeros((B, NH, DK, DV), dtype), np.zeros((B, NH, DK), dtype), np.zeros((B, NH), dtype)
    else:
        C, n, m = (np.array(a, dtype=dtype) for a in state)
    h = np.zeros((B, NH, S, DV), dtype)
    for b in range(B):
        for hd in range(NH):
            for t in range(S):
                if mask is not None and not mask[b, t]:
                    continue  # padding: the state does not change and h stays 0
                log_f = _logsigmoid(f[b, hd, t])
                m_new = max(log_f + m[b, hd], i[b, hd, t])
                f_act = np.exp(log_f + m[b, hd] - m_new)
                i_act = np.exp(i[b, hd, t] - m_new)
                C[b, hd] = f_act * C[b, hd] + i_act * np.outer(k[b, hd, t], v[b, hd, t])
                n[b, hd] = f_act * n[b, hd] + i_act * k[b, hd, t]
                m[b, hd] = m_new
                q_t = q[b, hd, t] / np.sqrt(dtype(DK))
                denom = max(abs(q_t @ n[b, hd]), np.exp(-m_new)) + dtype(eps)
                h[b, hd, t] = (q_t @ C[b, hd]) / denom
    return h, (C, n, m)
