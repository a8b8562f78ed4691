"""Where the bf16 tensor-core chunkwise kernel's time goes: its four launches timed cumulatively (gates; + local
states; + scan; + outputs) at each length; prints one JSON object. ncu on the H200 reported 100-300 us for
launches of a handful of threadgroups, so this times in-process, calls queued back to back like bench_kernel.py.

    python benchmarks/profile_tc_chunkwise.py --seqs 1024,4096,16384 --local-launches tile,chunk

``--local-launches``: the arrangements of the per-chunk state launch (tc_chunkwise.LOCAL_LAUNCH) to time.
"""
from __future__ import annotations

import argparse

import mlx.core as mx
from common import add_kernel_run_args, add_kernel_shape_args, emit, kernel_inputs, queued_time

from xlstm_metal.kernels.mlstm import tc_chunkwise as tc


def main(argv=None):
    p = argparse.ArgumentParser()
    add_kernel_shape_args(p)
    add_kernel_run_args(p)
    p.add_argument("--local-launches", default="tile,chunk")
    a = p.parse_args(argv)
    res = {"device": str(mx.default_device()), "heads": a.heads, "dk": a.dk, "dv": a.dv, "dtype": a.dtype}
    if not mx.cuda.is_available():
        res["skipped"] = "no CUDA backend on this machine: the kernel's launches are CUDA"
        emit(res, a.out)
        return
    fn = tc._make_chunkwise(fallback=tc.mlstm_chunkwise_native)
    for S in map(int, a.seqs.split(",")):
        q, k, v, i, f = kernel_inputs(S, a.heads, a.dk, a.dv, a.dtype)
        default = tc.LOCAL_LAUNCH
        for arrangement in a.local_launches.split(","):
            tc.LOCAL_LAUNCH = arrangement
            for upto in ("gates", "local", "scan", "outputs"):
                res[f"upto_{upto}_{arrangement}_ms_S{S}"] = 1e3 * queued_time(
                    lambda: fn.launch(q, k, v, i, f, None, 1e-6, None, upto=upto), a.iters)
        tc.LOCAL_LAUNCH = default
    emit(res, a.out)


if __name__ == "__main__":
    main()
