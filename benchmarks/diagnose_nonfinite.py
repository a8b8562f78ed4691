"""Find where a model's outputs stop being finite, or stop being reproducible; prints one JSON object.

    python benchmarks/diagnose_nonfinite.py --spec xlstm_7b --dtype bfloat16 --seq-len 1024

Open problem this is for (issue 4): on an H100 with MLX-CUDA 0.32.4 the 32-layer 7B-shape model gave
NaN logits at 1024 tokens through ``runner()``, while a hand loop evaluating each block's output was
finite. Evaluating extra arrays must never change values, so for every node this computes the output
twice from the same inputs, once evaluating the output alone and once together with the new state,
checks the first result again after the state was evaluated, and names the first node where any of
these disagree or stop being finite.
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


def as_np(a) -> np.ndarray:
    return np.array(a.astype(mx.float32))


def probe_nodes(runner, x, tol: float):
    """Walk the plan; report per node whether results depend on what else is evaluated."""
    g, plan = runner.graph, runner.plan(x.shape[1])
    vals = {g.inputs[0]: x}
    rows, first = [], None
    for step in plan.steps:
        block = g.block(step.node)
        ctx = NodeContext(step.node, step.kernel, step.chunk_size)
        ins = [vals[i] for i in step.inputs]
        out_a, new_a = block(ins, None, ctx)
        mx.eval(out_a)
        snap = as_np(out_a)
        row = {"node": step.node, "type": step.type, "finite_alone": bool(np.isfinite(snap).all()),
               "max_abs": float(np.nanmax(np.abs(snap))) if snap.size else 0.0}
        if new_a is not None:
            mx.eval(new_a)
            after = as_np(out_a)
            row["changed_by_state_eval"] = float(np.nanmax(np.abs(after - snap))) if np.isfinite(after).all() else "nonfinite"
            row["state_finite"] = all(finite(s) for s in new_a)
            out_b, new_b = block(ins, None, ctx)
            mx.eval(out_b, new_b)
            b = as_np(out_b)
            row["finite_with_state"] = bool(np.isfinite(b).all())
            row["diff_with_state"] = float(np.nanmax(np.abs(b - snap))) if row["finite_with_state"] else "nonfinite"
        bad = (not row["finite_alone"]) or row.get("finite_with_state") is False or (
            isinstance(row.get("diff_with_state"), float) and row["diff_with_state"] > tol * max(1.0, row["max_abs"])) or (
            row.get("changed_by_state_eval", 0.0) != 0.0)
        if bad and first is None:
            first = step.node
        rows.append(row)
        vals[step.node] = out_a
    return first, rows


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--spec", default="xlstm_tiny")
    p.add_argument("--model", help="checkpoint directory instead of --spec")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--tol", type=float, default=1e-2, help="relative tolerance between the two evaluations")
    p.add_argument("--out")
    a = p.parse_args(argv)
    runner = xLSTMRunner.from_pretrained(a.model, dtype=a.dtype) if a.model else xLSTMRunner.from_spec(a.spec, dtype=a.dtype)
    vocab = runner.graph.node(runner.graph.outputs[0])["out_type"].dim
    x = mx.array(np.random.default_rng(0).integers(0, vocab, size=(1, a.seq_len)), dtype=mx.int32)
    res = {"device": str(mx.default_device()), "seq_len": a.seq_len, "dtype": a.dtype}
    for name, kw in (("runner", {}), ("runner_last", {"logits": "last"})):
        logits, state = runner(x, **kw)
        mx.eval(logits, state.arrays())
        res[name] = {"logits_finite": finite(logits), "state_finite": all(finite(s) for s in state.arrays())}
    logits2, _ = runner(x)
    res["runner_repeatable"] = float(mx.max(mx.abs(logits2.astype(mx.float32) - runner(x)[0].astype(mx.float32))).item())
    first, rows = probe_nodes(runner, x, a.tol)
    res["first_bad_node"] = first
    res["nodes"] = rows
    emit(res, a.out)


if __name__ == "__main__":
    main()
