"""The mLSTM cell's gradient by recomputation, as the official TFLA kernels do it: the forward keeps only the cell's
inputs (and its outputs), and the backward recomputes the chunkwise forward from them (chunk-boundary states
included: one matmul over the chunks) before differentiating it. Autodiff of the plain kernel would instead keep
every intra-chunk tensor ([B, NH, chunks, L, L] weights, per-chunk states) of every layer until the backward
reaches it; with recomputation a training step holds one layer's at a time."""
from __future__ import annotations

import functools
from typing import Callable

import mlx.core as mx


def recomputing(fn: Callable) -> Callable:
    """``fn`` (the mLSTM kernel signature) with a gradient that recomputes its forward in the backward pass; values
    and gradients equal ``fn``'s. Non-array arguments (chunk size, eps, an absent state or mask) are fixed."""
    if getattr(fn, "recomputes", False):
        return fn

    @functools.wraps(fn)
    def call(q, k, v, i, f, state=None, *, mask=None, **options):
        # the mask (bool, no gradient) is a constant of the recomputation; the state, when given, an input
        def cell(q, k, v, i, f, *state_given):
            return fn(q, k, v, i, f, state_given[0] if state_given else None, mask=mask, **options)

        return mx.checkpoint(cell)(q, k, v, i, f, *(() if state is None else (tuple(state),)))

    call.recomputes = True
    return call


def recomputing_kernel(info):
    """A registered kernel (``KernelInfo``) whose gradient recomputes its forward (training plans use this)."""
    import dataclasses

    return dataclasses.replace(info, fn=recomputing(info.fn))
