"""Cross-cutting modes that the kernels, the runtime, the runner and generation all read: context variables
only, so any layer may import this module without importing another."""
from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator

_INFERENCE = contextvars.ContextVar("xlstm_metal_inference_mode", default=False)


@contextlib.contextmanager
def inference_mode() -> Iterator[None]:
    """Inside: fused kernels run without their gradient wrapper (nothing traced here is differentiated; a
    gradient taken through it fails in MLX). Wrap each call, not a generator's body: a suspended generator
    would leave the mode on in its caller."""
    token = _INFERENCE.set(True)
    try:
        yield
    finally:
        _INFERENCE.reset(token)


def in_inference_mode() -> bool:
    return _INFERENCE.get()
