"""Find where a model's outputs stop being finite; prints one JSON object.

    python benchmarks/diagnose_nonfinite.py --spec xlstm_7b --dtype bfloat16 --seq-len 1024

Open problem this is for (issue 4): on an H100 with MLX-CUDA 0.32.4 the 32-layer 7B-shape model gave
NaN logits at 1024 tokens through ``runner()``, while a hand loop evaluating each block's output was
finite. This runs (a) the runner, (b) the interpreter evaluating every node's output *and* state,
(c) a hand loop evaluating outputs only, and reports the first non-finite node of each.
"""
from __future__ import annotations

import argparse

import mlx.core as mx
import numpy as np
from common import emit

from xlstm_metal import xLSTMRunner
from xlstm_metal.blocks import NodeContext


def finite(a) -> bool:
    return bool(mx.all(mx.isfinite(a.astype(mx.float32))).item())


def first_bad(runner, x, with_state_eval: bool):
    g, plan = runner.graph, runner.plan(x.shape[1])
    vals = {g.inputs[0]: x}
    for step in plan.steps:
        out, new = g.block(step.node)([vals[i] for i in step.inputs], None, NodeContext(step.node, step.kernel, step.chunk_size))
        if with_state_eval and new is not None:
            mx.eval(out, new)
        else:
            mx.eval(out)
        vals[step.node] = out
        if not finite(out):
            return step.node
    return None


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--spec", default="xlstm_tiny")
    p.add_argument("--model", help="checkpoint directory instead of --spec")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--out")
    a = p.parse_args(argv)
    runner = xLSTMRunner.from_pretrained(a.model, dtype=a.dtype) if a.model else xLSTMRunner.from_spec(a.spec, dtype=a.dtype)
    vocab = runner.graph.node(runner.graph.outputs[0])["out_type"].dim
    x = mx.array(np.random.default_rng(0).integers(0, vocab, size=(1, a.seq_len)), dtype=mx.int32)
    logits, state = runner(x)
    res = {"device": str(mx.default_device()), "seq_len": a.seq_len, "runner_logits_finite": finite(logits),
           "runner_state_finite": all(finite(s) for s in state.arrays()),
           "first_bad_node_eval_output_and_state": first_bad(runner, x, True),
           "first_bad_node_eval_output_only": first_bad(runner, x, False)}
    emit(res, a.out)


if __name__ == "__main__":
    main()
