"""mLSTM kernel forward time per registered kernel and form; prints one JSON object.

    python benchmarks/bench_kernel.py --seqs 1024,4096,16384,65536 --heads 8 --dk 256 --dv 512

Compare with `official_baseline.py`'s chunkwise_fwd_ms_S* measured in the same job.
"""
from __future__ import annotations

import argparse
import json

import mlx.core as mx

from xlstm_metal.kernels import current_device, inference_mode, kernels
from common import add_kernel_run_args, add_kernel_shape_args, emit, kernel_inputs, queued_time


def main(argv=None):
    p = argparse.ArgumentParser()
    add_kernel_shape_args(p)
    add_kernel_run_args(p)
    p.add_argument("--official", help="official_baseline.py JSON from the same job, for ratios")
    p.add_argument("--only", help="comma-separated kernel names (default: every chunkwise kernel that runs here)")
    a = p.parse_args(argv)
    res = {"device": str(mx.default_device()), "heads": a.heads, "dk": a.dk, "dv": a.dv, "chunk": a.chunk, "dtype": a.dtype}
    off = json.load(open(a.official)) if a.official else {}
    for S in map(int, a.seqs.split(",")):
        q, k, v, i, f = kernel_inputs(S, a.heads, a.dk, a.dv, a.dtype)
        for kern in kernels("mlstm", "chunkwise"):
            if a.only and kern.name not in a.only.split(","):
                continue
            if kern.supports(device=current_device(), dtype=a.dtype, head_dims=(a.dk, a.dv)):
                continue

            def call():
                with inference_mode():  # a forward nothing differentiates (the official inputs need no grad either)
                    h, st = kern.fn(q, k, v, i, f, None, chunk_size=a.chunk)
                return h, *st

            try:
                ms = 1e3 * queued_time(call, a.iters)
            except Exception as exc:  # noqa: BLE001 - report, keep measuring the others
                res[f"{kern.name}_S{S}_error"] = str(exc)[:200]
                continue
            res[f"{kern.name}_fwd_ms_S{S}"] = ms
            ref = off.get(f"chunkwise_fwd_ms_S{S}")
            if ref:
                res[f"{kern.name}_S{S}_time_over_official"] = ms / ref
    emit(res, a.out)


if __name__ == "__main__":
    main()
