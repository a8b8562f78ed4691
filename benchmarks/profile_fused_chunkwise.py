"""Where the fused chunkwise kernel's time goes: its two launches (states, outputs) timed apart,
next to the whole fused kernel and the compiled native kernel, in one run; prints one JSON object.

    python benchmarks/profile_fused_chunkwise.py --seqs 1024,4096,16384,65536

Needs a GPU with the fused kernel's backend (CUDA or Metal); elsewhere it says so and exits 0.
"""
from __future__ import annotations

import argparse
import math

import mlx.core as mx
from common import add_kernel_run_args, add_kernel_shape_args, emit, kernel_inputs, timed

from xlstm_metal.kernels.mlstm import fused_chunkwise as fc
from xlstm_metal.kernels.mlstm.compiled import mlstm_chunkwise_compiled
from xlstm_metal.kernels.mlstm.first_use import backend_present


def stages(backend, q, k, v, i, f, chunk):
    """Callables for the two launches alone (the second one fed with evaluated states)."""
    B, NH, S, DK = q.shape
    DV, BH = v.shape[-1], B * NH
    L = min(chunk, fc.TILE, S)
    NC = math.ceil(S / L)
    gt = fc._prepare_gates(i, f, None, L, NC)
    zeros = (mx.zeros((BH, DK, DV)), mx.zeros((BH, DK)), mx.zeros((BH,)))
    meta = mx.array([S, NC, DK, DV, L, NH, math.ceil(DV / fc.TILE)], mx.int32)
    n_dk, n_dv = math.ceil(DK / fc.TILE), math.ceil(DV / fc.TILE)

    def states():
        return fc._kernel(backend, "states")(
            inputs=[q, k, v, gt["w"], gt["g"], gt["ml"], *zeros, meta], template=[("T", v.dtype)],
            grid=(fc.THREADS * n_dv, n_dk, BH), threadgroup=(fc.THREADS, 1, 1),
            output_shapes=[(BH, NC, DK, DV), (BH, NC, DK), (BH, NC), (B, NH, DK, DV), (B, NH, DK), (B, NH)],
            output_dtypes=[mx.float32] * 6)

    C_in, n_in, m_in = states()[:3]
    mx.eval(C_in, n_in, m_in, *gt.values())

    def outputs():
        return fc._kernel(backend, "outputs")(
            inputs=[q, k, v, gt["b"], gt["ig"], gt["cm"], gt["keep"], C_in, n_in, m_in, meta, mx.array([1e-6], mx.float32)],
            template=[("T", v.dtype)],
            grid=(fc.THREADS, NC, BH), threadgroup=(fc.THREADS, 1, 1), output_shapes=[(B, NH, S, DV)],
            output_dtypes=[v.dtype])
    return states, outputs


def main(argv=None):
    p = argparse.ArgumentParser()
    add_kernel_shape_args(p)
    add_kernel_run_args(p)
    a = p.parse_args(argv)
    backend = next((b for b in ("cuda", "metal") if backend_present(b)), None)
    res = {"device": str(mx.default_device()), "backend": backend, "chunk": a.chunk, "dtype": a.dtype}
    if backend is None or not fc.self_check(backend):
        res["skipped"] = "no GPU backend for the fused kernel here (or its self-check failed)"
        emit(res, a.out)
        return
    fused = fc._make_chunkwise(backend)
    for S in map(int, a.seqs.split(",")):
        q, k, v, i, f = kernel_inputs(S, a.heads, a.dk, a.dv, a.dtype)
        states, outputs = stages(backend, q, k, v, i, f, a.chunk)
        runs = {"fused": lambda: mx.eval(*fused(q, k, v, i, f, chunk_size=a.chunk)[0:1]),
                "states_launch": lambda: mx.eval(*states()),
                "outputs_launch": lambda: mx.eval(*outputs()),
                "compiled": lambda: mx.eval(mlstm_chunkwise_compiled(q, k, v, i, f, chunk_size=a.chunk)[0])}
        for name, fn in runs.items():
            res[f"{name}_ms_S{S}"] = 1e3 * timed(fn, warm=1, iters=a.iters)
    emit(res, a.out)


if __name__ == "__main__":
    main()
