"""Where the chunkwise kernel's time goes: the native kernel eager, compiled (elementwise chains
fused by ``mx.compile``), and at other chunk sizes; prints one JSON object, times as ratios to the
eager native kernel at chunk 64 in the same run.

    python benchmarks/profile_chunkwise.py --seqs 1024,4096,16384
    nsys profile --stats=true -o /tmp/prof python benchmarks/profile_chunkwise.py --seqs 4096 --only eager_L64
"""
from __future__ import annotations

import argparse
import time
from functools import partial

import mlx.core as mx
from common import add_kernel_shape_args, emit, kernel_inputs

from xlstm_metal.kernels import current_device, get_kernel
from xlstm_metal.kernels.mlstm.native import mlstm_chunkwise_native


def variants():
    out = {}
    for L in (64, 128, 256):
        out[f"eager_L{L}"] = partial(mlstm_chunkwise_native, chunk_size=L)
        out[f"compiled_L{L}"] = mx.compile(partial(mlstm_chunkwise_native, chunk_size=L))
    for name in ("cuda_mma_chunkwise", "cuda_chunkwise"):  # the fused GPU kernels, where they run
        kern = get_kernel("mlstm", name)
        if kern.supports(device=current_device(), dtype="bfloat16") is None:
            out[f"{name}_L64"] = partial(kern.fn, chunk_size=64)
    return out


def main(argv=None):
    p = argparse.ArgumentParser()
    add_kernel_shape_args(p)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--only", help="comma-separated variant names")
    p.add_argument("--out")
    a = p.parse_args(argv)
    vs = variants()
    if a.only:
        vs = {k: v for k, v in vs.items() if k in a.only.split(",")}
    res = {"device": str(mx.default_device())}
    for S in map(int, a.seqs.split(",")):
        q, k, v, i, f = kernel_inputs(S, a.heads, a.dk, a.dv)
        ref_h = None
        for name, fn in vs.items():
            def call():
                h, st = fn(q, k, v, i, f)
                mx.eval(h, *st)
                return h
            h = call()
            call()
            t = time.perf_counter()
            for _ in range(a.iters):
                call()
            ms = 1e3 * (time.perf_counter() - t) / a.iters
            if ref_h is None:
                ref_h = h
            res[f"{name}_ms_S{S}"] = round(ms, 3)
            res[f"{name}_max_diff_S{S}"] = float(mx.max(mx.abs(h.astype(mx.float32) - ref_h.astype(mx.float32))).item())
        base = res.get(f"eager_L64_ms_S{S}")
        if base:
            for name in vs:
                res[f"{name}_ratio_S{S}"] = round(res[f"{name}_ms_S{S}"] / base, 3)
    res["peak_memory_gb"] = mx.get_peak_memory() / 1e9
    emit(res, a.out)


if __name__ == "__main__":
    main()
