"""One compiled GPU kernel per (backend, name), built on first use: ``mx.fast.cuda_kernel`` on CUDA,
``mx.fast.metal_kernel`` on Metal. Every fused kernel builds its launch here, so none keeps a cache of
its own and a name stands for one source (MLX caches the compiled module by name, too)."""
from __future__ import annotations

import functools
from typing import Callable, Sequence

import mlx.core as mx

_compiled: dict[tuple[str, str], object] = {}


def gpu_kernel(backend: str, name: str, inputs: Sequence[str], outputs: Sequence[str],
               source: str | Callable[[], str], header: str = ""):
    """The kernel ``name`` for ``backend`` ("cuda" or "metal"); ``source`` (text, or a function giving it)
    is only read the first time."""
    key = (backend, name)
    if key not in _compiled:
        if backend not in ("cuda", "metal"):
            raise ValueError(f"no GPU kernel language for backend {backend!r}: expected 'cuda' or 'metal'")
        make = mx.fast.cuda_kernel if backend == "cuda" else mx.fast.metal_kernel
        _compiled[key] = make(name=name, input_names=list(inputs), output_names=list(outputs),
                              source=source() if callable(source) else source, header=header)
    return _compiled[key]


@functools.lru_cache(maxsize=256)
def constant(values: tuple, dtype) -> mx.array:
    """A small kernel input (shape metadata, eps, unused-input placeholders), made once per value: creating it per
    call costs a host-to-device copy or a fill launch each time, per layer, in every prefill."""
    return mx.array(list(values), dtype)
