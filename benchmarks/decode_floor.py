"""The floor MLX itself sets for batch-1 decoding: one matrix-vector product per weight matrix of the
model (every weight read once, nothing else), compiled; prints JSON with our decode speed beside it.

    python benchmarks/decode_floor.py --spec xlstm_7b --dtype bfloat16

If our decode is close to this floor, the remaining gap to the bandwidth limit is MLX's GEMV, not ours. On CUDA
the same products also run through our GEMV kernel (``gemv_kernel_floor_ms``).
"""
from __future__ import annotations

import argparse
import time

import mlx.core as mx
import mlx.nn as nn
from common import emit

from xlstm_metal import xLSTMRunner


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--spec", default="xlstm_tiny")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--out")
    a = p.parse_args(argv)
    runner = xLSTMRunner.from_spec(a.spec, dtype=a.dtype)
    mx.eval(runner.model.parameters())
    mats = [m.weight for _, m in runner.model.named_modules() if isinstance(m, nn.Linear)]
    lm = [m for _, m in runner.model.named_modules() if hasattr(m, "weight") and getattr(m, "weight").ndim == 2
          and not isinstance(m, nn.Linear)]
    mats += [m.weight for m in lm[-1:]]  # the lm_head (the embedding's rows are gathered, not streamed)
    xs = [mx.random.normal((1, w.shape[1])).astype(w.dtype) for w in mats]
    mx.eval(xs)

    @mx.compile
    def all_gemvs(*xs):
        return [x @ w.T for x, w in zip(xs, mats)]

    def timed(fn, n):
        fn()
        t = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - t) / n

    floor_s = timed(lambda: mx.eval(all_gemvs(*xs)), a.steps)
    extra = {}
    from xlstm_metal.kernels import gemv
    if gemv.available():  # the same products through our GEMV kernel (kernels/gemv.py), same call
        ours_gemv = gemv.make_gemv()
        kernel_floor = mx.compile(lambda *xs: [ours_gemv(x, w) for x, w in zip(xs, mats)])
        s = timed(lambda: mx.eval(kernel_floor(*xs)), a.steps)
        extra = {"gemv_kernel_floor_ms": s * 1e3, "gemv_kernel_over_mlx_floor_time": s / floor_s}
    state = runner(mx.array([[1, 2, 3]]))[1]
    tok = mx.array([[5]])

    def step():
        nonlocal state
        logits, state = runner(tok, state)
        mx.eval(logits, state.arrays())

    ours_s = timed(step, a.steps)
    gb = sum(w.nbytes for w in mats) / 1e9
    emit({"device": str(mx.default_device()), "weights_streamed_GB": gb, "gemv_floor_ms": floor_s * 1e3,
          "gemv_floor_tok_s": 1 / floor_s, "gemv_floor_GB_s": gb / floor_s, "ours_decode_ms": ours_s * 1e3,
          "ours_decode_tok_s": 1 / ours_s, "ours_over_floor_time": ours_s / floor_s, **extra}, a.out)


if __name__ == "__main__":
    main()
