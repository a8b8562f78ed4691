"""Batch-1 decoding of a model for a profiler: a fixed number of tokens, one after another, each evaluated, so
``nsys`` sees exactly the kernels of those tokens (``nsys_kernel_summary.py`` divides its totals by them).
Prints one JSON object: tokens, wall time per token.

    nsys profile -t cuda -o /tmp/decode python3 benchmarks/profile_decode.py --spec xlstm_7b --tokens 40
    nsys stats -r cuda_gpu_kern_sum -f csv /tmp/decode.nsys-rep | python3 benchmarks/nsys_kernel_summary.py --tokens 40
"""
from __future__ import annotations

import argparse
import time

import mlx.core as mx
from common import emit

from xlstm_metal import xLSTMRunner


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--spec", default="xlstm_tiny")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--tokens", type=int, default=40)
    p.add_argument("--gemv", action="store_true", help="route one-row products through kernels/gemv.py")
    p.add_argument("--out")
    a = p.parse_args(argv)
    if a.gemv:
        from xlstm_metal.kernels import gemv
        if not gemv.enable():
            raise SystemExit("--gemv: the GEMV kernel is not available here")
    runner = xLSTMRunner.from_spec(a.spec, dtype=a.dtype, seed=0)
    mx.eval(runner.model.parameters())
    state = runner.init_state(1)
    tok = mx.array([[3]])
    t0 = time.perf_counter()
    for _ in range(a.tokens):
        logits, state = runner(tok, state)
        mx.eval(logits, state.arrays())
    wall = time.perf_counter() - t0
    emit({"spec": a.spec, "dtype": a.dtype, "gemv": a.gemv, "tokens": a.tokens, "wall_ms_per_token": 1e3 * wall / a.tokens,
          "note": "the first token includes tracing and compiling the decode step"}, a.out)


if __name__ == "__main__":
    main()
