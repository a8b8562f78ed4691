"""The check every fused GPU kernel runs the first time it is selected in a process: its result on a
small input against the native kernel's, computed on the CPU (exact float32 matmuls: a GPU may round
them to TF32). A kernel that disagrees, or cannot even compile or run, refuses itself with a warning
and the scheduler takes the next kernel. On a Mac, where Linux CI cannot run Metal, this check is what
keeps the Metal sources honest.
"""
from __future__ import annotations

import warnings
from typing import Callable

import mlx.core as mx
import numpy as np

TOLERANCE = 1e-4  # relative to max(1, max |native|), per output array


def backend_present(backend: str) -> bool:
    """Whether this machine has the GPU backend (``"cuda"`` or ``"metal"``) a fused kernel is written for."""
    return bool(mx.cuda.is_available() if backend == "cuda" else mx.metal.is_available())


def native_on_cpu(fn: Callable, *args, **kw):
    """A native kernel's result, computed and evaluated on the CPU."""
    with mx.stream(mx.cpu):
        out = fn(*args, **kw)
        mx.eval(out)
    return out


def worst(errors) -> float:
    """The largest of ``errors``, or NaN if any is NaN (Python's ``max`` may drop a NaN)."""
    errors = list(errors)
    return float("nan") if any(e != e for e in errors) else max(errors, default=0.0)


def relative_error(got, want) -> float:
    """Worst ``max |got - want| / max(1, max |want|)`` over ``(h, (C, n, m))``; NaN if any output is NaN."""
    errors = []
    with mx.stream(mx.cpu):
        for a, b in zip([got[0], *got[1]], [want[0], *want[1]]):
            if a.shape != b.shape:
                raise ValueError(f"shape {a.shape} instead of {b.shape}")
            errors.append(float(mx.abs(a - b).max().item()) / max(1.0, float(mx.abs(b).max().item())))
    return worst(errors)


def chunkwise_error(fn: Callable, shapes) -> float:
    """Worst relative error of chunkwise kernel ``fn`` against the native chunkwise kernel on the CPU, over
    ``shapes`` = (B, NH, S, DK, DV, chunk) tuples, each without state and mask, then with both (inputs
    from a fixed seed; forget gates mostly open so the state carries across chunks)."""
    from .native import mlstm_chunkwise_native

    rng = np.random.default_rng(0)
    arr = lambda *s, scale=1.0: mx.array((rng.normal(size=s) * scale).astype(np.float32))  # noqa: E731
    errors = []
    for B, NH, S, DK, DV, chunk in shapes:
        q, k, v = arr(B, NH, S, DK), arr(B, NH, S, DK), arr(B, NH, S, DV)
        i, f = arr(B, NH, S, scale=3.0), arr(B, NH, S, scale=3.0) + 2.0
        state = (arr(B, NH, DK, DV), arr(B, NH, DK), arr(B, NH))
        mask = mx.array(rng.random((B, S)) > 0.2)
        for st, mk in ((None, None), (state, mask)):
            errors.append(relative_error(
                fn(q, k, v, i, f, st, chunk_size=chunk, mask=mk),
                native_on_cpu(mlstm_chunkwise_native, q, k, v, i, f, st, chunk_size=chunk, mask=mk)))
    return worst(errors)


def check_once(cache: dict[str, bool], backend: str, form: str, errors: Callable[[], float],
               tolerance: float = TOLERANCE, family: str = "mLSTM") -> bool:
    """``errors()`` runs the fused kernel against the native one and returns the worst relative error;
    the verdict (error <= ``tolerance``) is cached per backend for the process."""
    if backend in cache:
        return cache[backend]
    try:
        err = errors()
        ok = err <= tolerance  # False for NaN too
        why = f"results differ from the native {form} kernel (relative error {err:.2e} > {tolerance:g})"
    except Exception as exc:  # noqa: BLE001 - a kernel that cannot even run refuses itself
        ok, why = False, f"{type(exc).__name__}: {exc}"
    if not ok:
        warnings.warn(f"fused {backend} {family} {form} kernel disabled: {why}; using the next kernel", RuntimeWarning,
                      stacklevel=3)
    cache[backend] = ok
    return ok
