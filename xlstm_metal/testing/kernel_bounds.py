"""How close an mLSTM kernel must come to the float64 recurrence (the property suite's and kernel tests' bounds).

float32: max |kernel - float64 reference| <= rtol * max(1, max |reference|) (``relative_error``). Where inputs are so
ill-conditioned (|q·n| tiny against its terms, gates at the cap) that float32 itself cannot reach that, the bound is
10x the "float32 floor": the larger of a plain float32 loop's error and the change a few-ulp input perturbation
causes in exact arithmetic. On a GPU, exp/log are fast approximations (error ~1e-6 growing with |x|): the bound is 1e-4.
"""
from __future__ import annotations

import mlx.core as mx
import numpy as np

from ..kernels.gpu import relative_error
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


def _perturbed(arrays, scale: float, seed: int, inputs: int, states: int) -> list:
    """Two exact runs with the first ``inputs`` of q, k, v, i, f and the first ``states`` of C, n, m multiplied by
    ``1 + uniform(-scale, scale)``."""
    q, k, v, i, f, state, mask = arrays
    rng = np.random.default_rng(seed)
    jitter = lambda a: a * (1 + scale * rng.uniform(-1, 1, size=np.shape(a)))  # noqa: E731
    runs = []
    for _ in range(2):
        x = [jitter(a) if j < inputs else a for j, a in enumerate((q, k, v, i, f))]
        st_j = None if state is None else tuple(jitter(a) if j < states else a for j, a in enumerate(state))
        runs.append(mlstm_reference(*x, st_j, mask=mask))
    return runs


def _bounds(runs, h_ref, st_ref, rtol: float) -> list[float]:
    """Per output [h, C, n, m]: ``rtol``, or 10x the farthest of ``runs`` from the reference."""
    return [max(rtol, FLOOR_FACTOR * max(relative_error(run[0] if j == 0 else run[1][j - 1], ref) for run in runs))
            for j, ref in enumerate([h_ref, *st_ref])]


def float32_floor(arrays, h_ref, st_ref, rtol: float) -> list[float]:
    """Bounds [h, C, n, m] for a float32 kernel on these inputs: ``rtol``, or 10x the float32 floor (a float32 loop,
    and exact arithmetic on inputs moved by ~4 float32 ulps)."""
    runs = [mlstm_reference(*arrays[:6], mask=arrays[6], dtype=np.float32), *_perturbed(arrays, 2.0**-22, 0, 5, 3)]
    return _bounds(runs, h_ref, st_ref, rtol)


def bfloat16_floor(arrays, h_ref, st_ref, rtol: float = BF16_RTOL) -> list[float]:
    """Bounds [h, C, n, m] for a kernel whose inner products take bfloat16 operands (``math_dtype`` "bfloat16"):
    ``rtol``, or 10x the change that moving q, k, v and the incoming C, n by ~1 bfloat16 ulp causes in exact
    arithmetic (what rounding operands to 8 bits does where |q·n| is small)."""
    return _bounds(_perturbed(arrays, BF16_JITTER, 1, 3, 2), h_ref, st_ref, rtol)


def bfloat16_rounded(arrays):
    """``arrays`` with q, k, v, i, f rounded to bfloat16 (what a kernel given bfloat16 inputs sees)."""
    def rnd(a):
        return np.array(mx.array(np.asarray(a, np.float32)).astype(mx.bfloat16).astype(mx.float32), np.float64)

    return (*[rnd(a) for a in arrays[:5]], *arrays[5:])


def expected(arrays, rtol: float, math_dtype: str | None = None):
    """The float64 reference ``(h, (C, n, m))`` and the bounds ``[h, C, n, m]`` a kernel must meet on these inputs
    (computed once per input set, however many kernels are checked against it). ``math_dtype`` None: float32
    inputs (``float32_floor``); else the inputs are bfloat16-rounded and the kernel computes with float32 math
    (``max(BF16_RTOL, float32 floor)`` for h) or bfloat16 operands (``bfloat16_floor``)."""
    h_ref, st_ref = mlstm_reference(*arrays[:6], mask=arrays[6])
    if math_dtype == "bfloat16":
        return h_ref, st_ref, bfloat16_floor(arrays, h_ref, st_ref)
    tols = float32_floor(arrays, h_ref, st_ref, rtol)
    return h_ref, st_ref, [max(BF16_RTOL, tols[0]) if math_dtype else tols[0], *tols[1:]]


def parity_errors(fn, arrays, chunk, rtol: float, reference=None,
                  dtype=mx.float32) -> tuple[bool, list[float], list[float]]:
    """Whether ``fn`` meets the bound on these inputs (finite, each of h, C, n, m within its bound), its errors and
    their bounds; ``reference`` is ``expected(arrays, ...)`` if already computed; ``dtype``: q, k, v, i, f's dtype."""
    h_ref, st_ref, tols = reference or expected(arrays, rtol)
    h, st = run_kernel(fn, arrays, chunk, dtype)
    errs = [relative_error(a, b) for a, b in zip([h, *st], [h_ref, *st_ref])]
    return all(e <= t for e, t in zip(errs, tols)), errs, tols
