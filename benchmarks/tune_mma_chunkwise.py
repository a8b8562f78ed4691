"""The tensor-core chunkwise kernel at each value-tile width (16 / 32 columns per threadgroup) next to the
compiled native kernel, same inputs, same run; times as ratios to the compiled kernel. Prints one JSON object.

    python benchmarks/tune_mma_chunkwise.py --seqs 1024,4096,16384
"""
from __future__ import annotations

import argparse
import time

import mlx.core as mx
from common import add_kernel_run_args, add_kernel_shape_args, emit, kernel_inputs

from xlstm_metal.kernels import get_kernel
from xlstm_metal.kernels.mlstm import mma_chunkwise


def timed(fn, iters):
    def call():
        h, st = fn()
        mx.eval(h, *st)
        return h
    h = call()
    t = time.perf_counter()
    for _ in range(iters):
        call()
    return 1e3 * (time.perf_counter() - t) / iters, h


def main(argv=None):
    p = argparse.ArgumentParser()
    add_kernel_shape_args(p)
    add_kernel_run_args(p)
    a = p.parse_args(argv)
    compiled = get_kernel("mlstm", "compiled_chunkwise").fn
    res = {"device": str(mx.default_device()), "precise": mma_chunkwise.precise_by_default()}
    for S in map(int, a.seqs.split(",")):
        x = kernel_inputs(S, a.heads, a.dk, a.dv, a.dtype)
        base, ref = timed(lambda: compiled(*x, None, chunk_size=a.chunk), a.iters)
        res[f"compiled_ms_S{S}"] = round(base, 3)
        for tile in (16, 32):
            mma_chunkwise.TILE_DV = tile
            ms, h = timed(lambda: mma_chunkwise._make_chunkwise()(*x, None, chunk_size=a.chunk), a.iters)
            res[f"mma_tdv{tile}_ms_S{S}"] = round(ms, 3)
            res[f"mma_tdv{tile}_ratio_S{S}"] = round(ms / base, 3)
            res[f"mma_tdv{tile}_max_diff_S{S}"] = float(mx.max(mx.abs(h.astype(mx.float32) - ref.astype(mx.float32))).item())
    emit(res, a.out)


if __name__ == "__main__":
    main()
