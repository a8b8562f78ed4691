"""mLSTM chunkwise forward time of every registered kernel that runs here; prints one JSON object.

    python benchmarks/bench_kernel.py --seqs 1024,4096,16384,65536 --official official.json

Calls are queued back to back with one wait at the end, as `official_baseline.py` times the official kernel;
with its JSON from the same job (--official) each time gets its ratio to the official one.
"""
from __future__ import annotations

import argparse
import json
import time

import mlx.core as mx
from common import emit

from xlstm_metal.kernels import current_device, inference_mode, kernels, select_kernel


def queued_time(fn, iters: int, warmup_s: float = 0.3) -> float:
    """Seconds per call of ``fn`` (returning MLX arrays), calls queued back to back with ``mx.async_eval`` and one
    wait at the end, as the official baseline times its kernels (torch: launches, then one synchronize). A first
    stretch of calls warms the GPU's clocks, which otherwise make whatever is timed first look slow."""
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


def add_kernel_shape_args(p, seqs: str = "1024,4096") -> None:
    """The mLSTM kernel benchmark shape: the 7B's heads (8 x DK 256 x DV 512) by default, batch 1."""
    p.add_argument("--seqs", default=seqs)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--dk", type=int, default=256)
    p.add_argument("--dv", type=int, default=512)


def kernel_inputs(S: int, heads: int, dk: int, dv: int, dtype="bfloat16"):
    """Random, evaluated q, k, v, i, f of one sequence (forget pre-activations around +3, as trained gates)."""
    dt = getattr(mx, dtype) if isinstance(dtype, str) else dtype
    q = mx.random.normal((1, heads, S, dk)).astype(dt)
    k = mx.random.normal((1, heads, S, dk)).astype(dt)
    v = mx.random.normal((1, heads, S, dv)).astype(dt)
    i = mx.random.normal((1, heads, S)).astype(dt)
    f = (mx.random.normal((1, heads, S)) + 3).astype(dt)
    mx.eval(q, k, v, i, f)
    return q, k, v, i, f


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_kernel_shape_args(p)
    p.add_argument("--chunk", type=int, default=64)
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--official", help="official_baseline.py JSON from the same job, for ratios")
    p.add_argument("--only", help="comma-separated kernel names (default: every chunkwise kernel that runs here)")
    p.add_argument("--out")
    a = p.parse_args(argv)
    dims = dict(device=current_device(), dtype=a.dtype, head_dims=(a.dk, a.dv))
    res = {"device": str(mx.default_device()), "heads": a.heads, "dk": a.dk, "dv": a.dv, "chunk": a.chunk,
           "dtype": a.dtype, "selected": select_kernel("mlstm", "chunkwise", **dims).name, "mlx": mx.__version__}
    off = json.load(open(a.official)) if a.official else {}
    for S in map(int, a.seqs.split(",")):
        q, k, v, i, f = kernel_inputs(S, a.heads, a.dk, a.dv, a.dtype)
        for kern in kernels("mlstm", "chunkwise"):
            if (a.only and kern.name not in a.only.split(",")) or kern.supports(**dims) is not None:
                continue

            def call(kern=kern):
                with inference_mode():  # a forward nothing differentiates (the official inputs need no grad either)
                    h, st = kern.fn(q, k, v, i, f, None, chunk_size=a.chunk)
                return h, *st

            try:
                ms = 1e3 * queued_time(call, a.iters)
            except Exception as exc:  # noqa: BLE001 - report, keep measuring the others
                res[f"{kern.name}_S{S}_error"] = str(exc)[:200]
                continue
            res[f"{kern.name}_fwd_ms_S{S}"] = ms
            if ref := off.get(f"chunkwise_fwd_ms_S{S}"):
                res[f"{kern.name}_S{S}_time_over_official"] = ms / ref
    emit(res, a.out)
    return res


if __name__ == "__main__":
    main()
