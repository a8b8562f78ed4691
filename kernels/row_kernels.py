"""Row-wise fused GPU kernels (read a row, reduce it, write it back transformed), CUDA and Metal from one text: one
threadgroup per row, elements in registers, every load before the first store (outputs may alias inputs). Kernel
modules keep their algorithm, native fallback and first-use check; the shared machinery lives here."""
from __future__ import annotations

from typing import Callable

import mlx.core as mx

from .gpu import backend_present, gpu_kernel, source
from .registry import KernelInfo, register_kernel

# BLOCK_SUM(value, name): declares const float ``name`` = the group's sum of ``value``, in every thread. Needs
# ``SHARED float red[THREADS]`` and ``tid``; barriers only, so the tests' CPU emulator runs it too.
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
    """``body`` with ``THREADS`` (a power of two) and ``BLOCK_SUM`` defined, in ``backend``'s language."""
    if threads & (threads - 1):
        raise ValueError(f"a row kernel's threadgroup is a power of two, got {threads}")
    return source(f"constexpr int THREADS = {threads};\n" + BLOCK_SUM + body, backend)


class RowKernel:
    """One row-wise algorithm, compiled per backend on first use; ``launch`` runs it a threadgroup per row."""

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
    """Register ``native`` (priority 0) and ``make(backend)`` for CUDA and Metal (priority 10, GPU only, where the
    backend is present and ``self_check(backend)`` passes; gradient: the native ops')."""
    register_kernel(KernelInfo(family, "fused", f"native_{family}", native, priority=0, doc=native_doc))
    for backend in ("cuda", "metal"):
        register_kernel(KernelInfo(
            family, "fused", f"{backend}_{family}", make(backend), backend=backend, devices=frozenset({"gpu"}),
            priority=10, differentiable=False, reference=native,
            is_available=(lambda b=backend: backend_present(b) and self_check(b)),
            doc=f"fused {backend.upper()} {fused_doc}"))
