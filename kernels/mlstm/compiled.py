"""The native chunkwise kernel under ``mx.compile`` (MLX fuses its elementwise chains), GPU only: on the CPU
compiling costs more than it saves. One compiled function per (chunk size, eps, state given, mask given)."""
from __future__ import annotations

import mlx.core as mx

from ..registry import KernelInfo, register_kernel
from .native import MAX_CHUNKS, mlstm_chunkwise_native

_COMPILED: dict[tuple, object] = {}


def _compiled(chunk_size: int, eps: float, has_state: bool, has_mask: bool):
    key = (chunk_size, eps, has_state, has_mask)
    if key not in _COMPILED:
        def run(q, k, v, i, f, *rest):
            state = tuple(rest[:3]) if has_state else None
            mask = rest[-1] if has_mask else None
            h, (C, n, m) = mlstm_chunkwise_native(q, k, v, i, f, state, chunk_size=chunk_size, eps=eps, mask=mask)
            return h, C, n, m

        _COMPILED[key] = mx.compile(run)
    return _COMPILED[key]


def mlstm_chunkwise_compiled(q, k, v, i, f, state=None, *, chunk_size=64, eps=1e-6, mask=None):
    """``mlstm_chunkwise_native`` compiled; same signature and results."""
    if int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    if q.shape[2] == 0:
        return mlstm_chunkwise_native(q, k, v, i, f, state, chunk_size=chunk_size, eps=eps, mask=mask)
    args = [q, k, v, i, f] + (list(state) if state is not None else []) + ([mask] if mask is not None else [])
    h, C, n, m = _compiled(int(chunk_size), float(eps), state is not None, mask is not None)(*args)
    return h, (C, n, m)


register_kernel(KernelInfo("mlstm", "chunkwise", "compiled_chunkwise", mlstm_chunkwise_compiled, backend="native",
                           devices=frozenset({"gpu"}), priority=5, max_chunks=MAX_CHUNKS,
                           doc="chunkwise form, native MLX ops fused by mx.compile (GPU)"))
