"""The batch-1 decode step alone at the 7B shape (8 heads, DK 256, DV 512: 4 MB of float32 state per block):
the fused step kernel at several threadgroup shapes (``row_slices`` threads per value column), the native
step under ``mx.compile``, and a bandwidth floor (the state read and written once by one fused elementwise
kernel), in one process; prints one JSON object: microseconds per step, TB/s on the state's 8 MB moved, and
each fused variant's relative error against the native step.

As in a decode token, each evaluation runs one step per block (``--blocks`` independent states), so no
state is served from the L2 cache. ncu timed the default shape at 41 us per block inside the 7B decode
(``benchmarks/results/h200_run8_ncu_decode.json``), where 8 MB at the H200's bandwidth take ~2 us.

    python benchmarks/bench_step.py --row-slices 4,8,16,32
"""
from __future__ import annotations

import argparse

import mlx.core as mx
from common import emit, queued_time

from xlstm_metal.kernels.mlstm import fused_step
from xlstm_metal.kernels.mlstm.first_use import backend_present, relative_error
from xlstm_metal.kernels.mlstm.native import mlstm_step_native


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--dk", type=int, default=256)
    p.add_argument("--dv", type=int, default=512)
    p.add_argument("--blocks", type=int, default=32)
    p.add_argument("--row-slices", default="4,8,16,32")
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--out")
    a = p.parse_args(argv)
    NH, DK, DV, L = a.heads, a.dk, a.dv, a.blocks
    bf = mx.bfloat16
    rnd = lambda *s: mx.random.normal(s)  # noqa: E731
    qkv = [(rnd(1, NH, 1, DK).astype(bf), rnd(1, NH, 1, DK).astype(bf), rnd(1, NH, 1, DV).astype(bf),
            rnd(1, NH, 1).astype(bf), (rnd(1, NH, 1) + 3).astype(bf)) for _ in range(L)]
    states = [(rnd(1, NH, DK, DV), rnd(1, NH, DK), rnd(1, NH)) for _ in range(L)]
    mx.eval(qkv, states)
    moved_gb = 2 * NH * DK * DV * 4 / 1e9
    res = {"device": str(mx.default_device()), "heads": NH, "dk": DK, "dv": DV, "blocks": L, "state_GB_moved": moved_gb}

    def record(tag, step):
        s = queued_time(lambda: [step(*x, st) for x, st in zip(qkv, states)], a.iters) / L
        res[f"{tag}_us"] = 1e6 * s
        res[f"{tag}_TB_s"] = moved_gb / s / 1e3

    native = mx.compile(lambda q, k, v, i, f, st: mlstm_step_native(q, k, v, i, f, st))
    record("native_step", native)
    floor = mx.compile(lambda q, k, v, i, f, st: st[0] * 0.999 + 1e-3)  # the state in and out, nothing else
    record("floor_elementwise", floor)
    backend = "cuda" if backend_present("cuda") else "metal" if backend_present("metal") else None
    if backend is None:
        res["fused"] = "skipped: no CUDA or Metal backend on this machine"
    else:
        want = native(*qkv[0], states[0])
        for ry in map(int, a.row_slices.split(",")):
            step = fused_step._make_step(backend, row_slices=ry)
            res[f"fused_ry{ry}_error"] = relative_error(step(*qkv[0], states[0]), want)
            record(f"fused_ry{ry}", step)
            res[f"fused_ry{ry}_over_floor_time"] = res[f"fused_ry{ry}_us"] / res["floor_elementwise_us"]
    emit(res, a.out)


if __name__ == "__main__":
    main()
