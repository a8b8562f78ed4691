"""Run the same prefill many times and count non-finite or differing results; prints one JSON object.

    MLX_USE_CUDA_GRAPHS=0 python benchmarks/repeat_runs.py --spec xlstm_7b --dtype bfloat16 --seq-len 64

A correct runtime gives bitwise-identical logits on every repeat; this is how an intermittent
GPU-side problem (issue 4's NaN) is told apart from a numerical one, and how a work-around is checked.
"""
from __future__ import annotations

import argparse
import os

import mlx.core as mx
import numpy as np
from common import emit

from xlstm_metal import xLSTMRunner
from xlstm_metal.runtime import execute


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--spec", default="xlstm_tiny")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--repeats", type=int, default=8)
    p.add_argument("--logits", default="all", choices=["all", "last"])
    p.add_argument("--eval-every", default="runner", choices=["runner", "none", "node", "stateful"],
                   help="runner: runner(x); otherwise call the interpreter directly with this eval_every")
    p.add_argument("--eval-params", action="store_true", help="evaluate the (cast) parameters before the runs")
    p.add_argument("--chunk-size", type=int, help="override every mLSTM node's chunk size")
    p.add_argument("--kernel", help="override every mLSTM node's kernel (e.g. native_sequence)")
    p.add_argument("--dtype-run", default=None)
    p.add_argument("--out")
    a = p.parse_args(argv)
    runner = xLSTMRunner.from_spec(a.spec, dtype=a.dtype)
    g = runner.graph
    if a.eval_params:
        mx.eval(runner.model.parameters())
    ov = {}
    for n in g.compute_nodes():
        if g.node(n)["block_cls"].type_name == "mlstm":
            if a.chunk_size:
                ov.setdefault(n, {})["chunk_size"] = a.chunk_size
            if a.kernel:
                ov.setdefault(n, {})["kernel"] = a.kernel
    if ov:
        runner.set_overrides(ov)
    vocab = g.node(g.outputs[0])["out_type"].dim
    x = mx.array(np.random.default_rng(0).integers(0, vocab, size=(1, a.seq_len)), dtype=mx.int32)
    ref, rows = None, []
    for _ in range(a.repeats):
        if a.eval_every == "runner":
            logits, state = runner(x, logits=a.logits)
        else:
            outs, state = execute(g, runner.plan(a.seq_len), x, None, last_only=a.logits == "last",
                                  eval_every=None if a.eval_every == "none" else a.eval_every)
            logits = outs[g.outputs[0]]
        mx.eval(logits, state.arrays())
        lg = np.array(logits.astype(mx.float32))
        row = {"finite": bool(np.isfinite(lg).all()),
               "state_finite": all(bool(mx.all(mx.isfinite(s)).item()) for s in state.arrays())}
        if ref is None and row["finite"]:
            ref = lg
        elif ref is not None and row["finite"]:
            row["max_diff_vs_first"] = float(np.max(np.abs(lg - ref)))
        rows.append(row)
    env = {k: v for k, v in os.environ.items() if k.startswith("MLX_") or k == "NVIDIA_TF32_OVERRIDE"}
    emit({"device": str(mx.default_device()), "env": env, "args": vars(a), "seq_len": a.seq_len, "logits": a.logits,
          "nonfinite_runs": sum(not r["finite"] for r in rows),
          "differing_runs": sum(r.get("max_diff_vs_first", 0.0) != 0.0 for r in rows), "runs": rows}, a.out)


if __name__ == "__main__":
    main()
