"""Repeat single operations of the 7B-shape model on identical inputs, with NaN-poisoned buffers in
between, and count results that differ from the first or are non-finite; prints one JSON object.

    python benchmarks/probe_op_determinism.py --seq-len 64

A pure function of its inputs must give the same bits every time; an operation that does not is
reading memory it never wrote. Used to find the source of issue 4's intermittent GPU NaN.
"""
from __future__ import annotations

import argparse

import mlx.core as mx
import numpy as np
from common import emit
from probe_gpu_ops import poison, to_np

from xlstm_metal import xLSTMRunner
from xlstm_metal.blocks import NodeContext


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--spec", default="xlstm_7b")
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--max-log2", type=int, default=28)
    a = p.parse_args(argv)
    runner = xLSTMRunner.from_spec(a.spec, dtype="bfloat16")
    mx.eval(runner.model.parameters())
    g = runner.graph
    plan = runner.plan(a.seq_len)
    steps = {s.node: s for s in plan.steps}
    mlstm_node = next(n for n, s in steps.items() if s.type == "mlstm")
    ffn_node = next(n for n, s in steps.items() if s.type == "swiglu")
    blk, ffn = g.block(mlstm_node), g.block(ffn_node)
    D = blk.q.weight.shape[1]
    rng = np.random.default_rng(0)
    x = mx.array(rng.normal(size=(1, a.seq_len, D)), mx.bfloat16)
    ctx = NodeContext(mlstm_node, steps[mlstm_node].kernel, steps[mlstm_node].chunk_size)
    fctx = NodeContext(ffn_node, steps[ffn_node].kernel, steps[ffn_node].chunk_size)
    W8 = blk.igate_preact.weight
    ops = {
        "gate_linear_bias": lambda: blk.igate_preact(x),
        "gate_matmul_nobias": lambda: x @ W8.T,
        "gate_addmm": lambda: mx.addmm(blk.igate_preact.bias, x, W8.T),
        "q_linear": lambda: blk.q(x),
        "v_linear": lambda: blk.v(x),
        "mlstm_block": lambda: blk([x], None, ctx)[0],
        "mlstm_state": lambda: blk([x], None, ctx)[1][0],
        "ffn_block": lambda: ffn([x], None, fctx)[0],
        "gate_f32": lambda: x.astype(mx.float32) @ W8.T.astype(mx.float32),
    }
    res = {"device": str(mx.default_device()), "seq_len": a.seq_len, "ops": {}}
    for name, fn in ops.items():
        first, differ, nonfinite = None, 0, 0
        for _ in range(a.repeats):
            poison(a.max_log2)
            out = to_np(fn())
            if not np.isfinite(out).all():
                nonfinite += 1
            if first is None:
                first = out
            elif not np.array_equal(out, first, equal_nan=True):
                differ += 1
        res["ops"][name] = {"differ": differ, "nonfinite": nonfinite, "shape": list(first.shape)}
    emit(res)


if __name__ == "__main__":
    main()
