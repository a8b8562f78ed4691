"""How close an mLSTM kernel must come to the float64 recurrence (the property suite's and kernel tests' bounds).

float32: max |kernel - float64 reference| <= rtol * max(1, max |reference|). Where inputs are so ill-conditioned
(|q·n| tiny against its terms, gates at the cap) that float32 itself cannot reach that, the bound is 10x the
"float32 floor": the larger of a plain float32 loop's error and the change a few-ulp input perturbation causes in
exact arithmetic. On a GPU, exp/log are fast approximations (error ~1e-6 growing with |x|): the bound is 1e-4.
"""
from __future__ import annotations

import mlx.core as mx
import numpy as np

from ..kernels.mlstm.reference import mlstm_reference

F32_RTOL = {"cpu": 1e-5, "gpu": 1e-4}
FLOOR_FACTOR = 10
BF16_RTOL = 1e-2  # bf16 inputs: output rounding (2^-8 of the largest output) plus float32 math
BF16_JITTER = 2.0**-8  # bfloat16 operands of inner products are perturbed by up to half of this


def run_kernel(fn, arrays, chunk, dtype=mx.float32):
    """``fn`` (a registered kernel's function) on float64 numpy inputs; outputs back as float64 numpy."""
    q, k, v, i, f, state, mask = arrays
    mxa = lambda a, dt=mx.float32: mx.array(np.asarray(a, np.float32)).astype(dt)  # noqa: E731
    st_ = None if state is None else tuple(mxa(a) for a in state)
    h, out_state = fn(mxa(q, dtype), mxa(k, dtype), mxa(v, dtype), mxa(i, dtype), mxa(f, dtype), st_,
                      chunk_size=chunk, mask=None if mask is None else mx.array(mask))
    return np.array(h.astype(mx.float32), np.float64), tuple(np.array(a, np.float64) for a in out_state)


def worst(a, b) -> float:
    """max |a - b| relative to max(1, max |b|)."""
    return float(np.abs(a - b).max()) / max(1.0, float(np.abs(b).max())) if b.size else 0.0


def float32_floor(arrays, h_ref, st_ref, rtol: float):
    """Tolerances (h, [C, n, m]) for a float32 kernel on these inputs: ``rtol``, or 10x the float32 floor."""
    q, k, v, i, f, state, mask = arrays
    runs = [mlstm_reference(q, k, v, i, f, state, mask=mask, dtype=np.float32)]
    rng = np.random.default_rng(0)
    for _ in range(2):  # exact arithmetic on inputs moved by ~4 float32 ulps
        jitter = lambda a: a * (1 + 2.0**-22 * rng.uniform(-1, 1, size=np.shape(a)))  # noqa: E731
        st_j = None if state is None else tuple(jitter(a) for a in state)
        runs.append(mlstm_reference(jitter(q), jitter(k), jitter(v), jitter(i), jitter(f), st_j, mask=mask))
    h_floor = max(worst(h, h_ref) for h, _ in runs)
    st_floor = [max(worst(st[j], st_ref[j]) for _, st in runs) for j in range(3)]
    return max(rtol, FLOOR_FACTOR * h_floor), [max(rtol, FLOOR_FACTOR * x) for x in st_floor]


def bfloat16_floor(arrays, h_ref, st_ref, rtol: float = BF16_RTOL):
    """Tolerances (h, [C, n, m]) for a kernel whose inner products take bfloat16 operands (``math_dtype``
    "bfloat16"): ``rtol``, or 10x the change that moving q, k, v and the incoming state by ~1 bfloat16 ulp
    causes in exact arithmetic (what rounding operands to 8 bits does where |q·n| is small)."""
    q, k, v, i, f, state, mask = arrays
    rng = np.random.default_rng(1)
    h_floor, st_floor = 0.0, [0.0, 0.0, 0.0]
    for _ in range(2):
        jitter = lambda a: a * (1 + BF16_JITTER * rng.uniform(-1, 1, size=np.shape(a)))  # noqa: E731
        st_j = None if state is None else (jitter(state[0]), jitter(state[1]), state[2])
        h, st = mlstm_reference(jitter(q), jitter(k), jitter(v), i, f, st_j, mask=mask)
        h_floor = max(h_floor, worst(h, h_ref))
        st_floor = [max(a, worst(x, y)) for a, x, y in zip(st_floor, st, st_ref)]
    return max(rtol, FLOOR_FACTOR * h_floor), [max(rtol, FLOOR_FACTOR * x) for x in st_floor]


def bfloat16_rounded(arrays):
    """``arrays`` with q, k, v, i, f rounded to bfloat16 (what a kernel given bfloat16 inputs sees)."""
    def rnd(a):
        return np.array(mx.array(np.asarray(a, np.float32)).astype(mx.bfloat16).astype(mx.float32), np.float64)

    return (*[rnd(a) for a in arrays[:5]], *arrays[5:])


def expected_bfloat16(arrays, math_dtype: str, f32_rtol: float):
    """The float64 reference on ``arrays`` (already bfloat16-rounded) and the bounds ``[h, C, n, m]`` for a kernel
    given bfloat16 inputs: float32 math (``max(BF16_RTOL, float32 floor)``) or bfloat16 operands (``bfloat16_floor``).
    """
    h_ref, st_ref = mlstm_reference(*arrays[:5], arrays[5], mask=arrays[6])
    if math_dtype == "bfloat16":
        tol, st_tol = bfloat16_floor(arrays, h_ref, st_ref)
    else:
        tol, st_tol = float32_floor(arrays, h_ref, st_ref, f32_rtol)
        tol = max(BF16_RTOL, tol)
    return h_ref, st_ref, [tol, *st_tol]


def expected(arrays, rtol: float):
    """The float64 reference ``(h, (C, n, m))`` and the bounds ``[h, C, n, m]`` a float32 kernel must meet on these
    inputs (computed once per input set, however many kernels are checked against it)."""
    h_ref, st_ref = mlstm_reference(*arrays[:5], arrays[5], mask=arrays[6])
    tol, st_tol = float32_floor(arrays, h_ref, st_ref, rtol)
    return h_ref, st_ref, [tol, *st_tol]


def parity_errors(fn, arrays, chunk, rtol: float, reference=None,
                  dtype=mx.float32) -> tuple[bool, list[float], list[float]]:
    """Whether ``fn`` meets the bound on these inputs, its errors (h, C, n, m) and their bounds; ``reference`` is
    ``expected(arrays, rtol)`` (or ``expected_bfloat16``) if already computed; ``dtype``: q, k, v, i, f's dtype."""
    h_ref, st_ref, tols = reference or expected(arrays, rtol)
    h, st = run_kernel(fn, arrays, chunk, dtype)
    errs = [worst(h, h_ref)] + [worst(a, b) for a, b in zip(st, st_ref)]
    finite = bool(np.all(np.isfinite(h)) and all(np.all(np.isfinite(a)) for a in st))
    return finite and all(e <= t for e, t in zip(errs, tols)), errs, tols
