"""Batch-1 decoding of a model for a profiler: ``--warmup`` tokens (the first traces and compiles the decode step),
then ``--tokens`` timed ones, one after another, each evaluated. ``nsys`` sees the kernels of all ``tokens_run``
(every token launches the same kernels; ``nsys_kernel_summary.py`` divides its totals by them). Prints one JSON
object with the wall time per timed token. MLX's CUDA backend launches its work as CUDA graphs of at most
``MLX_MAX_OPS_PER_BUFFER`` operations; running this under several values shows what the batching costs.

    nsys profile -t cuda -o /tmp/decode python3 benchmarks/profile_decode.py --spec xlstm_7b --tokens 40
    nsys stats -r cuda_gpu_kern_sum -f csv /tmp/decode.nsys-rep | python3 benchmarks/nsys_kernel_summary.py --tokens 43
"""
from __future__ import annotations

import argparse
import os
import time

import mlx.core as mx
from common import cuda_profiler_range, emit

from xlstm_metal import xLSTMRunner


def time_decode(runner, tokens: int, warmup: int, start=None, stop=None) -> float:
    """Seconds per token of ``tokens`` batch-1 decode steps after ``warmup`` untimed ones (the first traces and
    compiles the step), each evaluated; ``start()`` / ``stop()`` run around the timed ones."""
    state, tok = runner.init_state(1), mx.array([[3]])
    for k in range(warmup + tokens):
        if k == warmup:
            mx.synchronize()
            if start is not None:
                start()
            t0 = time.perf_counter()
        logits, state = runner(tok, state)
        mx.eval(logits, state.arrays())
    wall = time.perf_counter() - t0
    if stop is not None:
        mx.synchronize()
        stop()
    return wall / tokens


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--spec", default="xlstm_tiny")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--tokens", type=int, default=40)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--gemv", action="store_true", help="route one-row products through kernels/gemv.py")
    p.add_argument("--profile-range", action="store_true",
                   help="profile only the timed tokens: cuProfilerStart/Stop around them (ncu --profile-from-start off)")
    p.add_argument("--out")
    a = p.parse_args(argv)
    if a.gemv:
        from xlstm_metal.kernels import gemv
        if not gemv.enable():
            raise SystemExit("--gemv: the GEMV kernel is not available here")
    runner = xLSTMRunner.from_spec(a.spec, dtype=a.dtype, seed=0)
    mx.eval(runner.model.parameters())
    start, stop = cuda_profiler_range(a.profile_range)
    per_token = time_decode(runner, a.tokens, a.warmup, start, stop)
    wall = per_token * a.tokens
    emit({"spec": a.spec, "dtype": a.dtype, "gemv": a.gemv, "tokens": a.tokens, "tokens_run": a.warmup + a.tokens,
          "max_ops_per_buffer": os.environ.get("MLX_MAX_OPS_PER_BUFFER", "MLX default"),
          "wall_ms_per_token": 1e3 * wall / a.tokens, "tok_s": a.tokens / wall}, a.out)


if __name__ == "__main__":
    main()
