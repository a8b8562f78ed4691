"""Where a prefill's time goes, by ablation: the same model with the mLSTM cell replaced by a no-op
(h = v, state unchanged), so the difference is the cell's cost inside the real model; prints JSON.

    python benchmarks/ablate_prefill.py --spec xlstm_7b --dtype bfloat16 --seq-len 4096

For when no working profiler is at hand (the GPU machine's nsys could not import its own traces).
"""
from __future__ import annotations

import argparse
import time

import mlx.core as mx
import numpy as np
from common import emit

from xlstm_metal import xLSTMRunner
from xlstm_metal.kernels import KernelInfo, register_kernel


def _no_cell(q, k, v, i, f, state=None, *, chunk_size=64, eps=1e-6, mask=None):
    B, NH, S, DK = q.shape
    DV = v.shape[-1]
    if state is None:
        state = (mx.zeros((B, NH, DK, DV)), mx.zeros((B, NH, DK)), mx.zeros((B, NH)))
    return v, state


def prefill_ms(runner, x, iters):
    def call():
        logits, state = runner(x, logits="last")
        mx.eval(logits, state.arrays())
    call()
    t = time.perf_counter()
    for _ in range(iters):
        call()
    return 1e3 * (time.perf_counter() - t) / iters


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--spec", default="xlstm_tiny")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--seq-len", type=int, default=4096)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--out")
    a = p.parse_args(argv)
    register_kernel(KernelInfo("mlstm", "chunkwise", "ablation_no_cell", _no_cell, priority=-100,
                               doc="benchmark ablation only: h = v"))
    runner = xLSTMRunner.from_spec(a.spec, dtype=a.dtype)
    g = runner.graph
    vocab = g.node(g.outputs[0])["out_type"].dim
    x = mx.array(np.random.default_rng(0).integers(0, vocab, size=(1, a.seq_len)), dtype=mx.int32)
    cells = [n for n in g.compute_nodes() if g.node(n)["block_cls"].type_name == "mlstm"]
    res = {"device": str(mx.default_device()), "seq_len": a.seq_len,
           "chunk_kernel": runner.plan(a.seq_len).step(cells[0]).kernel.name}
    res["full_ms"] = prefill_ms(runner, x, a.iters)
    runner.set_overrides({n: {"kernel": "ablation_no_cell"} for n in cells})
    res["no_cell_ms"] = prefill_ms(runner, x, a.iters)
    runner.set_overrides({n: {"kernel": "native_chunkwise"} for n in cells})
    res["eager_cell_ms"] = prefill_ms(runner, x, a.iters)
    res["cell_share"] = 1 - res["no_cell_ms"] / res["full_ms"]
    res["tok_s_full"] = a.seq_len / res["full_ms"] * 1e3
    emit(res, a.out)


if __name__ == "__main__":
    main()
