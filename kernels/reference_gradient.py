"""Gradients for fused kernels, whose MLX custom kernels define no VJP: the fused forward, and the VJP of the native
reference recomputed from the same inputs (correct, not fast; training plans prefer kernels with their own
gradient). Inside ``inference_mode()`` the fused kernels are called bare, sparing the wrapper's host time."""
from __future__ import annotations

import functools
from typing import Callable

import mlx.core as mx
from mlx.utils import tree_map

from xlstm_metal.modes import in_inference_mode


def _split(tree, keep: Callable):
    """The leaves of ``tree`` that ``keep`` selects, and a function putting new ones in their places."""
    chosen: list = []
    tree_map(lambda v: chosen.append(v) if keep(v) else None, tree)

    def rebuild(arrays):
        it = iter(arrays)
        return tree_map(lambda v: next(it) if keep(v) else v, tree)

    return chosen, rebuild


def _is_float(a) -> bool:
    return isinstance(a, mx.array) and mx.issubdtype(a.dtype, mx.floating)


def _is_array(a) -> bool:
    return isinstance(a, mx.array)


def _wrapped(fused: Callable, vjp: Callable) -> Callable:
    """``fused`` as an ``mx.custom_function`` over its float array inputs with VJP ``vjp(run, primals, cotangents)``;
    ``run(fn, arrays)`` calls ``fn`` (``fused``'s signature) at those arrays and returns its output arrays in order."""

    @functools.wraps(fused)
    def call(*args, **kwargs):
        if in_inference_mode():
            return fused(*args, **kwargs)
        inputs, rebuild_args = _split((args, kwargs), _is_float)
        if not inputs:
            return fused(*args, **kwargs)
        out_tree = {}

        def run(fn, arrays):
            a, kw = rebuild_args(arrays)
            outs, rebuild = _split(fn(*a, **kw), _is_array)
            out_tree.setdefault("rebuild", rebuild)  # (the forward's, set first)
            return outs

        forward = mx.custom_function(lambda *arrays: run(fused, arrays))

        @forward.vjp
        def _(primals, cotangents, outputs):
            # (MLX hands over a lone array, not a one-element tuple, for one input or one output)
            primals = [primals] if isinstance(primals, mx.array) else list(primals)
            cotangents = [cotangents] if isinstance(cotangents, mx.array) else list(cotangents)
            grads = vjp(run, primals, cotangents)
            return grads[0] if len(grads) == 1 else tuple(grads)

        outs = forward(*inputs)  # sets out_tree["rebuild"]
        return out_tree["rebuild"](outs)

    call.gradient_wrapped = True  # (registering it again does not wrap it twice)
    return call


def with_reference_gradient(fused: Callable, reference: Callable) -> Callable:
    """``fused`` for values, the gradient of ``reference`` (same signature and outputs) under ``mx.grad``/``vjp``."""

    def vjp(run, primals, cotangents):
        return mx.vjp(lambda *arrays: run(reference, arrays), primals, cotangents)[1]

    call = _wrapped(fused, vjp)
    call.reference = reference
    return call


def without_gradient(fused: Callable, name: str) -> Callable:
    """``fused`` for values; differentiating it raises an error naming the kernel and the way out."""

    def vjp(run, primals, cotangents):
        raise ValueError(f"kernel {name} defines no gradient and was registered without a reference: plan with "
                         f"training=True (make_plan(..., training=True)) to get a kernel gradients flow through")

    return _wrapped(fused, vjp)
