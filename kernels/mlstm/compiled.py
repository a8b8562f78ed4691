"""The native chunkwise kernel under ``mx.compile`` (MLX fuses its elementwise chains), GPU only: on the CPU
compiling costs more than it saves. ``mx.compile`` traces once per input shapes, chunk size, eps and which of the
state and mask are given."""
from __future__ import annotations

import mlx.core as mx

from ..registry import KernelInfo, register_kernel
from .native import MAX_CHUNKS, mlstm_chunkwise_native

mlstm_chunkwise_compiled = mx.compile(mlstm_chunkwise_native)

register_kernel(KernelInfo("mlstm", "chunkwise", "compiled_chunkwise", mlstm_chunkwise_compiled, backend="native",
                           devices=frozenset({"gpu"}), priority=5, max_chunks=MAX_CHUNKS,
                           doc="chunkwise form, native MLX ops fused by mx.compile (GPU)"))
