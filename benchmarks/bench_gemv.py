"""Batch-1 matrix-vector products at the 7B decode shapes: our GEMV kernel (kernels/gemv.py) against MLX's own
``x @ W.T`` (its gemv kernel) and ``mx.addmm`` (cuBLASLt with a bias epilogue: what a product with a bias or a
residual becomes) in the same call, with the bandwidth each reaches; prints one JSON object. The shapes are the
merged input projections (q|k|v|o|i|f), out_proj, the merged FFN up projections, proj_down and the lm_head.

As in a decode step, each evaluation runs many products (over distinct matrices, >= 1 GB in all, so none is
served from the 50 MB L2): timing one product per evaluation measures the evaluation's fixed cost instead
(``h200_run7_gemv_queued_per_eval.json``: 50-115 us for every shape, both kernels).

    python benchmarks/bench_gemv.py --iters 10
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
    p.add_argument("--iters", type=int, default=10)
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
        gb = N * K * 2 / 1e9
        copies = max(4, int(-(-1.0 // gb)))
        ws = [(mx.random.normal((N, K)) * 0.02).astype(mx.bfloat16) for _ in range(copies)]
        x = mx.random.normal((1, 1, K)).astype(mx.bfloat16)
        c = mx.random.normal((1, 1, N)).astype(mx.bfloat16)
        mx.eval(ws, x, c)
        for tag, call in (("mlx", lambda: [x @ w.T for w in ws]), ("mlx_addmm", lambda: [mx.addmm(c, x, w.T) for w in ws]),
                          ("ours", lambda: [fn(x, w) for w in ws])):
            s = queued_time(call, a.iters) / copies
            res[f"{name}_{tag}_us"] = 1e6 * s
            res[f"{name}_{tag}_TB_s"] = gb / s / 1e3
        res[f"{name}_ours_over_mlx_time"] = res[f"{name}_ours_us"] / res[f"{name}_mlx_us"]
        res[f"{name}_addmm_over_mlx_time"] = res[f"{name}_mlx_addmm_us"] / res[f"{name}_mlx_us"]
        del ws
    emit(res, a.out)


if __name__ == "__main__":
    main()
