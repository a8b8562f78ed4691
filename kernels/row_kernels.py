"""Row-wise fused GPU kernels: one threadgroup per row, a shared-memory sum across it, CUDA and Metal from one text.

The norm fusions (``add_rms_norm``, ``head_norm_gate``) are all this shape: read a row, reduce it, write it
back transformed. In a batch-1 decode step one row is the whole launch, so the row's latency is the launch's:
1024 threads with the row's elements held in registers, and each thread issues all its loads before its first
store (an output may alias an input for all the compiler knows, so a store orders the loads after it).

What they share lives here: the threadgroup sum (``BLOCK_SUM``, written with barriers only, so the CPU emulator
in the tests runs the same text), compiling one text for each backend, launching it over rows, and registering
a family. Each kernel module keeps its own algorithm, native fallback and first-use check.
"""
from __future__ import annotations

from typing import Callable

import mlx.core as mx

from .gpu import backend_present, gpu_kernel, source
from .registry import KernelInfo, register_kernel

# BLOCK_SUM(value, name): every thread of the group contributes ``value``; afterwards ``name`` (a new
# const float) holds the group's total in every thread. Needs ``SHARED float red[THREADS]`` and ``tid``;
# THREADS (a power of two) is the kernel's threadgroup size.
BLOCK_SUM = """
#define BLOCK_SUM(value, name)                                        \\
    red[tid] = (value);                                                \\
    BARRIER;                                                           \\
    for (int s_ = THREADS / 2; s_ > 0; s_ /= 2) {                      \\
        if (tid < s_) red[tid] += red[tid + s_];                       \\
        BARRIER;                                                       \\
    }                                                                  \\
    const float name = red[0];                                         \\
    BARRIER;
"""


def row_source(body: str, backend: str | dict, threads: int) -> str:
    """``body`` with ``THREADS`` and the threadgroup sum defined, in ``backend``'s language (or an explicit idiom
    mapping)."""
    if threads & (threads - 1):
        raise ValueError(f"a row kernel's threadgroup is a power of two, got {threads}")
    return source(f"constexpr int THREADS = {threads};\n" + BLOCK_SUM + body, backend)


class RowKernel:
    """One row-wise algorithm, compiled per backend on first use; ``launch(kernel, rows, ...)`` runs it with
    one threadgroup of ``threads`` per row. ``make_kernel`` (tests) replaces the compiled kernel with any callable
    that has ``mx.fast.cuda_kernel``'s calling convention."""

    def __init__(self, name: str, body: str, inputs: list[str], outputs: list[str], threads: int):
        self.name, self.body, self.inputs, self.outputs, self.threads = name, body, inputs, outputs, threads

    def compiled(self, backend: str):
        return gpu_kernel(backend, self.name, self.inputs, self.outputs,
                          lambda: row_source(self.body, backend, self.threads))

    def launch(self, kernel, rows: int, *, inputs, template, output_shapes, output_dtypes):
        return kernel(inputs=inputs, template=template, grid=(self.threads * rows, 1, 1),
                      threadgroup=(self.threads, 1, 1), output_shapes=output_shapes, output_dtypes=output_dtypes)


def register_row_family(family: str, native: Callable, make: Callable, self_check: Callable, native_doc: str,
                        fused_doc: str) -> None:
    """Register a row-kernel family: the native ops (priority 0, anywhere) and the fused kernel for CUDA and for
    Metal (``make(backend)``; priority 10, GPU only), each available where its backend is present and
    ``self_check(backend)`` passes; the fused kernels' gradient is the native ops'. ``fused_doc`` is completed
    with the backend's name."""
    register_kernel(KernelInfo(family, "fused", f"native_{family}", native, priority=0, doc=native_doc))
    for backend in ("cuda", "metal"):
        register_kernel(KernelInfo(
            family, "fused", f"{backend}_{family}", make(backend), backend=backend, devices=frozenset({"gpu"}),
            priority=10, differentiable=False, reference=native,
            is_available=(lambda b=backend: backend_present(b) and self_check(b)),
            doc=f"fused {backend.upper()} {fused_doc}"))
