"""What every fused GPU kernel shares: its text in CUDA or Metal, its compiled form, its small constant inputs and
the check it runs on first use.

Kernel texts are written once, in the common subset of CUDA and Metal, with a handful of idiom words (``SHARED``,
``BARRIER``, ``TID``, ``GX``/``GY``/``GZ``, ...) that ``source`` replaces by each language's; the tests compile the
same text as C++/OpenMP (tests/kernels/cpu_emulator.py) and run it against the native kernels on the CPU.

The first time a fused kernel is selected in a process it runs a small input against its native reference,
computed on the CPU (exact float32 matmuls: a GPU may round them to TF32). A kernel that disagrees, or cannot even
compile or run, refuses itself with a warning and the scheduler takes the next kernel. On a Mac, where Linux CI
cannot run Metal, this check is what keeps the Metal texts honest.
"""
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
    """``body`` in ``backend``'s language (or with an explicit idiom mapping): each idiom word replaced as a whole
    word."""
    idioms = IDIOMS[backend] if isinstance(backend, str) else backend
    return re.sub(r"\b(" + "|".join(idioms) + r")\b", lambda m: idioms[m.group(1)], body)


_compiled: dict[tuple[str, str], object] = {}


def gpu_kernel(backend: str, name: str, inputs: Sequence[str], outputs: Sequence[str],
               text: str | Callable[[], str], header: str = ""):
    """The kernel ``name`` for ``backend`` ("cuda" or "metal"), compiled once per process (``mx.fast.cuda_kernel``
    or ``mx.fast.metal_kernel``); ``text`` (the source, or a function giving it) is only read the first time. A
    name stands for one source, so no kernel keeps a cache of its own."""
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
    """A small kernel input (shape metadata, eps, unused-input placeholders), made once per value: creating it per
    call costs a host-to-device copy or a fill launch each time, per layer, in every prefill."""
    return mx.array(list(values), dtype)


# ----------------------------------------------------------------------------------------- first-use checks
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
    """Whether fused ``kernel`` (a name for messages, e.g. "mLSTM step") passes on ``backend``: ``errors()`` runs it
    against its native reference and returns the worst relative error. Checked once per process."""
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
    """Decide the first-use verdict of ``kernel`` on ``backend`` (``False`` switches the kernel off for the process,
    e.g. to measure without it); ``None`` forgets it, so the next use checks again."""
    if ok is None:
        _VERDICTS.pop((kernel, backend), None)
    else:
        _VERDICTS[(kernel, backend)] = bool(ok)
