"""Batch-1 matrix-vector products at the 7B decode shapes: our GEMV kernel (kernels/gemv.py) against MLX's own
``x @ W.T`` in the same call, with the bandwidth each reaches; prints one JSON object. The shapes are the merged
input projections (q|k|v|o|i|f), out_proj, the merged FFN up projections, proj_down and the lm_head.

    python benchmarks/bench_gemv.py --iters 200
"""
from __future__ import annotations

import argparse

import mlx.core as mx
from common import emit, queued_time

from xlstm_metal.kernels import gemv

SHAPES = {"qkvo_if": (12304, 4096), "out_proj": (4096, 4096), "ffn_up": (21888, 4096), "proj_down": (4096, 10944),
          "lm_head": (50304, 4096)}


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--iters", type=int, default=200)
    p.add_argument("--out")
    a = p.parse_args(argv)
    res = {"device": str(mx.default_device())}
    if not mx.cuda.is_available():
        res["skipped"] = "no CUDA backend on this machine: the kernel is CUDA"
        emit(res, a.out)
        return
    res["first_use_check"] = gemv.available()
    fn = gemv.make_gemv()
    for name, (N, K) in SHAPES.items():
        w = (mx.random.normal((N, K)) * 0.02).astype(mx.bfloat16)
        x = mx.random.normal((1, 1, K)).astype(mx.bfloat16)
        mx.eval(w, x)
        gb = N * K * 2 / 1e9
        for tag, call in (("mlx", lambda: x @ w.T), ("ours", lambda: fn(x, w))):
            s = queued_time(call, a.iters)
            res[f"{name}_{tag}_us"] = 1e6 * s
            res[f"{name}_{tag}_TB_s"] = gb / s / 1e3
        res[f"{name}_ours_over_mlx_time"] = res[f"{name}_ours_us"] / res[f"{name}_mlx_us"]
    emit(res, a.out)


if __name__ == "__main__":
    main()
