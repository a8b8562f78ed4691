"""What fused GPU kernels share. Texts are written once in the common subset of CUDA and Metal, with idiom words
(``SHARED``, ``BARRIER``, ``TID``, ``GX``, ...) that ``source`` replaces; the tests run them as C++ on the CPU. On
first selection a kernel is checked against its native reference on the CPU (a GPU may round float32 matmuls to
TF32); one that disagrees or fails refuses itself with a warning and the scheduler takes the next kernel."""
from __future__ import annotations

import functools
import re
import warnings
from dataclasses import dataclass
from typing import Callable

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten

from .registry import KernelInfo, register_kernel

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


@dataclass(frozen=True)
class GpuKernel:
    """One kernel text with its argument names; ``header``: helpers placed before it (CUDA-only for some)."""
    name: str
    body: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    header: str = ""

    def compiled(self, backend: str):
        """The kernel for ``backend`` ("cuda" or "metal"), compiled once per process."""
        key = (backend, self.name)
        if key not in _compiled:
            if backend not in ("cuda", "metal"):
                raise ValueError(f"no GPU kernel language for backend {backend!r}: expected 'cuda' or 'metal'")
            make = mx.fast.cuda_kernel if backend == "cuda" else mx.fast.metal_kernel
            _compiled[key] = make(name=self.name, input_names=list(self.inputs), output_names=list(self.outputs),
                                  source=source(self.body, backend), header=self.header)
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


def max_error(got, want) -> tuple[float, float]:
    """``(max |got - want|, that / max(1, max |want|))`` in float64, the worst over the arrays of two results of one
    structure (arrays, numpy arrays, or tuples of them, e.g. a kernel's ``(h, (C, n, m))``): NaN where either holds
    a NaN or infinity, infinity where shapes differ, 0 for empty arrays."""
    worst_abs = worst_rel = 0.0
    for (_, g), (_, w) in zip(tree_flatten(got), tree_flatten(want), strict=True):
        g, w = (np.asarray(x.astype(mx.float32) if isinstance(x, mx.array) else x, np.float64) for x in (g, w))
        if g.shape != w.shape:
            return float("inf"), float("inf")
        if not (np.isfinite(g).all() and np.isfinite(w).all()):
            return float("nan"), float("nan")
        if g.size:
            err = float(np.abs(g - w).max())
            worst_abs, worst_rel = max(worst_abs, err), max(worst_rel, err / max(1.0, float(np.abs(w).max())))
    return worst_abs, worst_rel


def relative_error(got, want) -> float:
    """``max_error``'s relative part: ``max |got - want| / max(1, max |want|)``, NaN for non-finite values."""
    return max_error(got, want)[1]


def random_normal(dtype, seed: int = 0) -> Callable:
    """``normal(*shape, scale=1, shift=0)``: seeded normal arrays in ``dtype`` (first-use check inputs)."""
    rng = np.random.default_rng(seed)
    return lambda *shape, scale=1.0, shift=0.0: mx.array(
        (rng.normal(size=shape) * scale + shift).astype(np.float32)).astype(dtype)


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


@dataclass(frozen=True)
class Fused:
    """A fused GPU kernel's first-use contract: ``make(backend)`` gives its function, ``errors(fn, dtype=...)``
    ``fn``'s worst relative error against the native reference on the CPU; above ``tolerance`` it refuses itself.
    (``make``'s further arguments let the tests run the same function on the CPU emulator.)"""
    name: str  # its first-use verdict's name
    make: Callable
    errors: Callable
    tolerance: float = TOLERANCE

    def check(self, backend: str, fn: Callable | None = None, **kw) -> bool:
        """Whether ``fn`` (default ``make(backend)``) passes on ``backend``, checked once per process."""
        return check_once(self.name, backend, lambda: self.errors(fn or self.make(backend), **kw), self.tolerance)

    def register(self, family: str, form: str, name: str, doc: str, backends=("cuda", "metal"), **info) -> None:
        """Register the kernel as ``{backend}_{name}`` for each backend: GPU only, where the backend is present and
        the check passes; no gradient of its own (``info["reference"]``'s is used)."""
        for b in backends:
            register_kernel(KernelInfo(
                family, form, f"{b}_{name}", self.make(b), backend=b, devices=frozenset({"gpu"}), differentiable=False,
                is_available=lambda b=b: backend_present(b) and self.check(b), doc=f"fused {b.upper()} {doc}", **info))
