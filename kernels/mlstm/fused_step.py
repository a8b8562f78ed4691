"""Fused mLSTM decode step: gates, state update and readout in one GPU launch (CUDA and Metal).

One thread per (batch·head, value column j): it walks the DK rows of its column of C, updating
the state and accumulating q·C; the normaliser n and the stabiliser m are updated alongside.
The algorithm is written once (``_BODY``) and wrapped in the CUDA or Metal thread-index idiom.

Each fused kernel checks itself against the native step on a small input the first time it is
selected in a process, and refuses itself (with a warning) if they disagree — on a Mac, where
Linux CI cannot run Metal, this check is what keeps the Metal source honest.
"""
from __future__ import annotations

import mlx.core as mx
import numpy as np

from ..registry import KernelInfo, register_kernel
from .first_use import backend_present, check_once, native_on_cpu, relative_error
from .native import mlstm_step_native

# Shared algorithm. X / Y are the thread's column and (batch*head) row; T is the q/k/v dtype.
_BODY = """
    const int j = X;
    const int bh = Y;
    if (j >= DV || bh >= BH) return;
    const int b = bh / NH;
    const float keep = keep_[b];
    const float m_old = m_[bh];
    const float f_raw = static_cast<float>(f_[bh]);
    const float i_raw = static_cast<float>(i_[bh]);
    const float log_f = (f_raw < 0.0f ? f_raw : 0.0f) - log(1.0f + exp(-fabs(f_raw)));
    const float m_new = keep > 0.0f ? fmax(log_f + m_old, i_raw) : m_old;
    const float fa = keep > 0.0f ? exp(log_f + m_old - m_new) : 1.0f;
    const float ia = keep > 0.0f ? exp(i_raw - m_new) : 0.0f;
    const float scale = rsqrt(static_cast<float>(DK));
    const float vj = static_cast<float>(v_[bh * DV + j]);
    float num = 0.0f;
    float qn = 0.0f;
    for (int r = 0; r < DK; ++r) {
        const float qr = static_cast<float>(q_[bh * DK + r]) * scale;
        const float kr = static_cast<float>(k_[bh * DK + r]);
        const int c_idx = (bh * DK + r) * DV + j;
        const float c = fa * C_[c_idx] + ia * kr * vj;
        C_out[c_idx] = c;
        num += qr * c;
        const float nr = fa * n_[bh * DK + r] + ia * kr;
        qn += qr * nr;
        if (j == 0) n_out[bh * DK + r] = nr;
    }
    if (j == 0) m_out[bh] = m_new;
    const float denom = fmax(fabs(qn), exp(fmin(-m_new, 80.0f))) + eps_[0];
    h_out[bh * DV + j] = static_cast<T>(keep > 0.0f ? num / denom : 0.0f);
"""
_INPUTS = ["q_", "k_", "v_", "i_", "f_", "C_", "n_", "m_", "keep_", "eps_"]
_OUTPUTS = ["h_out", "C_out", "n_out", "m_out"]
_CUDA = {"X": "(blockIdx.x * blockDim.x + threadIdx.x)", "Y": "(blockIdx.y * blockDim.y + threadIdx.y)"}
_METAL = {"X": "int(thread_position_in_grid.x)", "Y": "int(thread_position_in_grid.y)"}


def _source(idioms: dict[str, str]) -> str:
    body = _BODY
    for name, expr in idioms.items():
        body = body.replace(f"= {name};", f"= {expr};")
    return body


_kernels: dict[str, object] = {}


def _kernel(backend: str):
    if backend not in _kernels:
        if backend == "cuda":
            _kernels[backend] = mx.fast.cuda_kernel(name="xlstm_mlstm_step", input_names=_INPUTS, output_names=_OUTPUTS,
                                                    source=_source(_CUDA))
        else:
            _kernels[backend] = mx.fast.metal_kernel(name="xlstm_mlstm_step", input_names=_INPUTS, output_names=_OUTPUTS,
                                                     source=_source(_METAL))
    return _kernels[backend]


def _make_step(backend: str, make_kernel=None):
    """The step kernel for ``backend``; ``make_kernel()`` may supply the launch (the tests run the
    same algorithm text on the CPU this way)."""
    make_kernel = make_kernel or (lambda: _kernel(backend))

    def step(q, k, v, i, f, state=None, *, chunk_size=64, eps=1e-6, mask=None):
        B, NH, S, DK = q.shape
        if S != 1:
            raise ValueError(f"the fused step kernel takes exactly one token, got seq_len {S}")
        DV = v.shape[-1]
        if state is None:
            state = (mx.zeros((B, NH, DK, DV), mx.float32), mx.zeros((B, NH, DK), mx.float32), mx.zeros((B, NH), mx.float32))
        C, n, m = (a.astype(mx.float32) for a in state)
        dt = v.dtype
        keep = mx.ones((B,), mx.float32) if mask is None else mask.reshape(B).astype(mx.float32)
        tg = min(DV, 256)
        h, C, n, m = make_kernel()(
            inputs=[q.astype(dt).reshape(B * NH, DK), k.astype(dt).reshape(B * NH, DK), v.reshape(B * NH, DV),
                    i.astype(dt).reshape(B * NH), f.astype(dt).reshape(B * NH), C, n, m, keep, mx.array([eps], mx.float32)],
            template=[("T", dt), ("DK", DK), ("DV", DV), ("NH", NH), ("BH", B * NH)],
            grid=(((DV + tg - 1) // tg) * tg, B * NH, 1), threadgroup=(tg, 1, 1),
            output_shapes=[(B * NH, DV), (B, NH, DK, DV), (B, NH, DK), (B, NH)],
            output_dtypes=[dt, mx.float32, mx.float32, mx.float32])
        return h.reshape(B, NH, 1, DV), (C, n, m)
    return step


_verified: dict[str, bool] = {}


def self_check(backend: str, fn=None) -> bool:
    """Run the fused step and the native step on a small random input; True when they agree."""
    fn = fn or _make_step(backend)

    def errors():
        rng = np.random.default_rng(0)
        B, NH, DK, DV = 2, 3, 8, 20
        arr = lambda *s, scale=1.0: mx.array((rng.normal(size=s) * scale).astype(np.float32))  # noqa: E731
        q, k, v = arr(B, NH, 1, DK), arr(B, NH, 1, DK), arr(B, NH, 1, DV)
        i, f = arr(B, NH, 1, scale=3.0), arr(B, NH, 1, scale=3.0)
        state = (arr(B, NH, DK, DV), arr(B, NH, DK), arr(B, NH))
        mask = mx.array([[True], [False]])
        return relative_error(fn(q, k, v, i, f, state, mask=mask),
                              native_on_cpu(mlstm_step_native, q, k, v, i, f, state, mask=mask))

    return check_once(_verified, backend, "step", errors)


for _backend in ("cuda", "metal"):
    register_kernel(KernelInfo(
        "mlstm", "step", f"{_backend}_step", _make_step(_backend), backend=_backend, devices=frozenset({"gpu"}),
        dtypes=frozenset({"float32", "bfloat16", "float16"}), priority=10,
        is_available=(lambda b=_backend: backend_present(b) and self_check(b)),
        doc=f"fused {_backend.upper()} decode step (gates + state update + readout in one launch)"))
