"""Where the bf16 tensor-core chunkwise kernel's time goes: its three launches timed cumulatively (gates; gates +
states; all three) at each length, for each key-dim tile of the sequential states launch; prints one JSON object.
ncu on the H200 reported 100-300 us for launches of a handful of threadgroups, so this times in-process instead.

    python benchmarks/profile_tc_chunkwise.py --seqs 1024,4096,16384 --state-dk-tiles 64,32
"""
from __future__ import annotations

import argparse
import time

import mlx.core as mx
from common import add_kernel_run_args, add_kernel_shape_args, emit, kernel_inputs

from xlstm_metal.kernels.mlstm import tc_chunkwise as tc


def main(argv=None):
    p = argparse.ArgumentParser()
    add_kernel_shape_args(p)
    add_kernel_run_args(p)
    p.add_argument("--state-dk-tiles", default="64,32")
    a = p.parse_args(argv)
    res = {"device": str(mx.default_device()), "heads": a.heads, "dk": a.dk, "dv": a.dv, "dtype": a.dtype}
    fn = tc._make_chunkwise(fallback=tc.mlstm_chunkwise_native)
    for S in map(int, a.seqs.split(",")):
        q, k, v, i, f = kernel_inputs(S, a.heads, a.dk, a.dv, a.dtype)
        for tile in map(int, a.state_dk_tiles.split(",")):
            tc.STATE_DK_TILE = tile
            for upto in ("gates", "states", "outputs"):
                def call():
                    mx.eval(fn.launch(q, k, v, i, f, None, 1e-6, None, upto=upto))
                call()
                t = time.perf_counter()
                for _ in range(a.iters):
                    call()
                res[f"upto_{upto}_dk{tile}_ms_S{S}"] = 1e3 * (time.perf_counter() - t) / a.iters
    emit(res, a.out)


if __name__ == "__main__":
    main()
