"""What every benchmark script shares: timing a callable and emitting its JSON result."""
from __future__ import annotations

import json
import time
from pathlib import Path


def timed(fn, warm: int = 2, iters: int = 5) -> float:
    """Mean seconds per call of ``fn`` after ``warm`` untimed calls (``fn`` must evaluate its MLX work)."""
    for _ in range(warm):
        fn()
    t = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - t) / iters


def emit(result: dict, out: str | None = None) -> None:
    """Print the result as JSON, and also write it to ``out`` when given."""
    text = json.dumps(result, indent=2)
    print(text)
    if out:
        Path(out).write_text(text + "\n")


def add_kernel_shape_args(p, seqs: str = "1024,4096") -> None:
    """The mLSTM kernel benchmark shape: the 7B's heads (8 x DK 256 x DV 512) by default, batch 1."""
    p.add_argument("--seqs", default=seqs)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--dk", type=int, default=256)
    p.add_argument("--dv", type=int, default=512)


def add_kernel_run_args(p) -> None:
    """How a kernel benchmark runs its calls: mLSTM chunk size, input dtype, timed iterations, JSON file."""
    p.add_argument("--chunk", type=int, default=64)
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--out")


def kernel_inputs(S: int, heads: int, dk: int, dv: int, dtype="bfloat16"):
    """Random, evaluated q, k, v, i, f of one sequence (forget pre-activations around +3, as trained gates)."""
    import mlx.core as mx

    dt = getattr(mx, dtype) if isinstance(dtype, str) else dtype
    q = mx.random.normal((1, heads, S, dk)).astype(dt)
    k = mx.random.normal((1, heads, S, dk)).astype(dt)
    v = mx.random.normal((1, heads, S, dv)).astype(dt)
    i = mx.random.normal((1, heads, S)).astype(dt)
    f = (mx.random.normal((1, heads, S)) + 3).astype(dt)
    mx.eval(q, k, v, i, f)
    return q, k, v, i, f


def queued_time(fn, iters: int, warmup_s: float = 0.3) -> float:
    """Seconds per call of ``fn`` (returning MLX arrays), calls queued back to back with ``mx.async_eval`` and one
    wait at the end, as the official baseline times its kernels (torch: launches, then one synchronize). A first
    stretch of calls warms the GPU's clocks, which otherwise make whatever is timed first look slow."""
    import time

    import mlx.core as mx

    t = time.perf_counter()
    while time.perf_counter() - t < warmup_s:
        mx.eval(fn())
    t = time.perf_counter()
    outs = []
    for _ in range(iters):
        out = fn()
        mx.async_eval(out)
        outs.append(out)
    mx.eval(outs)
    return (time.perf_counter() - t) / iters


def cuda_profiler_range(enabled: bool):
    """``(start, stop)`` to put around the work a profiler run with ``--profile-from-start off`` should see (ncu):
    the CUDA driver's cuProfilerStart / cuProfilerStop when ``enabled``, else ``(None, None)``."""
    if not enabled:
        return None, None
    import ctypes

    cuda = ctypes.CDLL("libcuda.so.1")
    return cuda.cuProfilerStart, cuda.cuProfilerStop
