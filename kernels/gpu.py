"""What fused GPU kernels share. Texts are written once in the common subset of CUDA and Metal, with idiom words
(``SHARED``, ``BARRIER``, ``TID``, ``GX``, ...) that ``source`` replaces; the tests run them as C++ on the CPU. On
first selection a kernel is checked against its native reference on the CPU (a GPU may round float32 matmuls to
TF32); one that disagrees or fails refuses itself with a warning and the scheduler takes the next kernel."""
from __future__ import annotations

import functools
import re
import warnings
from typing import Callable, Sequence

import mlx.core as mx

IDIOMS = {
    "cuda": {"SHARED": "__shared__ __align__(16)", "BARRIER": "__syncthreads()", "UNROLL": "_Pragma(\"unroll\")",
             "TID": "int(threadIdx.x)", "GX": "int(blockIdx.x)", "GY": "int(blockIdx.y)", "GZ": "int(blockIdx.z)"},
    # Metal aligns threadgroup allocations to 16 bytes (MLX's own kernels read them as vectors too)
    "metal": {"SHARED": "threadgroup", "BARRIER": "threadgroup_barrier(mem_flags::mem_threadgroup)",
              "UNROLL": "_Pragma(\"unroll\")", "TID": "int(thread_position_in_threadgroup.x)",
              "GX": "int(threadgroup_position_in_grid.x)", "GY": "int(threadgroup_position_in_grid.y)",
              "GZ": "int(threadgroup_position_in_grid.z)"},
}


def source(body: str, backend: str | dict) -> str:
    """``body`` in ``backend``'s language (or an explicit idiom mapping), idioms replaced as whole words."""
    idioms = IDIOMS[backend] if isinstance(backend, str) else backend
    return re.sub(r"\b(" + "|".join(idioms) + r")\b", lambda m: idioms[m.group(1)], body)


_compiled: dict[tuple[str, str], object] = {}


def gpu_kernel(backend: str, name: str, inputs: Sequence[str], outputs: Sequence[str],
               text: str | Callable[[], str], header: str = ""):
    """Kernel ``name`` for ``backend`` ("cuda" or "metal"), compiled once per process from ``text`` (or ``text()``)."""
    key = (backend, name)
    if key not in _compiled:
        if backend not in ("cuda", "metal"):
            raise ValueError(f"no GPU kernel language for backend {backend!r}: expected 'cuda' or 'metal'")
        make = mx.fast.cuda_kernel if backend == "cuda" else mx.fast.metal_kernel
        _compiled[key] = make(name=name, input_names=list(inputs), output_names=list(outputs),
                              source=text() if callable(text) else text, header=header)
    return _compiled[key]


@functools.lru_cache(maxsize=256)
def constant(values: tuple, dtype) -> mx.array:
    """A small kernel input (metadata, eps, placeholders), made once per value rather than copied in every call."""
    return mx.array(list(values), dtype)


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


def array_error(got: mx.array, want: mx.array) -> float:
    """``max |got - want| / max(1, max |want|)``, both taken as float32, computed on the CPU."""
    if got.shape != want.shape:
        raise ValueError(f"shape {got.shape} instead of {want.shape}")
    with mx.stream(mx.cpu):
        g, w = got.astype(mx.float32), want.astype(mx.float32)
        return float(mx.abs(g - w).max()) / max(1.0, float(mx.abs(w).max()))


def relative_error(got, want) -> float:
    """Worst ``array_error`` over an mLSTM kernel's ``(h, (C, n, m))``; NaN if any output is NaN."""
    return worst(array_error(a, b) for a, b in zip([got[0], *got[1]], [want[0], *want[1]]))


_VERDICTS: dict[tuple[str, str], bool] = {}


def check_once(kernel: str, backend: str, errors: Callable[[], float], tolerance: float = TOLERANCE) -> bool:
    """Whether fused ``kernel`` passes on ``backend``, once per process: ``errors()`` gives its worst relative error
    against the native reference."""
    key = (kernel, backend)
    if key in _VERDICTS:
        return _VERDICTS[key]
    try:
        err = errors()
        ok = err <= tolerance  # False for NaN too
        why = f"results differ from the native kernel's (relative error {err:.2e} > {tolerance:g})"
    except Exception as exc:  # noqa: BLE001 - a kernel that cannot even run refuses itself
        ok, why = False, f"{type(exc).__name__}: {exc}"
    if not ok:
        warnings.warn(f"fused {backend} {kernel} kernel disabled: {why}; using the next kernel", RuntimeWarning,
                      stacklevel=3)
    _VERDICTS[key] = ok
    return ok


def set_verdict(kernel: str, backend: str, ok: bool | None) -> None:
    """Set the first-use verdict of ``kernel`` on ``backend`` (``False``: off for the process); ``None`` forgets it."""
    if ok is None:
        _VERDICTS.pop((kernel, backend), None)
    else:
        _VERDICTS[(kernel, backend)] = bool(ok)
