"""Row-wise fused GPU kernels (read a row, reduce it, write it back transformed), CUDA and Metal from one text: one
threadgroup per row, elements in registers, every load before the first store (outputs may alias inputs). Kernel
modules keep their algorithm, native fallback and first-use check; the shared machinery lives here."""
from __future__ import annotations

from typing import Callable

from .gpu import Fused, GpuKernel
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


def row_kernel(name: str, body: str, inputs: list[str], outputs: list[str], threads: int) -> GpuKernel:
    """``body`` with ``THREADS`` (its threadgroup size, a power of two) and ``BLOCK_SUM`` defined."""
    if threads & (threads - 1):
        raise ValueError(f"a row kernel's threadgroup is a power of two, got {threads}")
    return GpuKernel(name, f"constexpr int THREADS = {threads};\n" + BLOCK_SUM + body, tuple(inputs), tuple(outputs))


def register_row_family(family: str, native: Callable, fused: Fused, native_doc: str, fused_doc: str) -> None:
    """Register ``native`` (priority 0) and ``fused`` for CUDA and Metal (priority 10; gradient: the native ops')."""
    register_kernel(KernelInfo(family, "fused", f"native_{family}", native, priority=0, doc=native_doc))
    fused.register(family, "fused", family, fused_doc, priority=10, reference=native)
