"""Compare each node of a model on the GPU with the same node on the CPU, with the GPU allocator's
cache filled with NaN first; prints one JSON object.

    python benchmarks/probe_gpu_ops.py --spec xlstm_7b --dtype bfloat16 --seq-len 64 --nodes 20

A kernel that reads memory it did not write (or leaves part of its output unwritten) looks right
on fresh, zeroed allocations and goes wrong once buffers are recycled; poisoning the cache with NaN
makes such a bug show up at once and in the node that has it.
"""
from __future__ import annotations

import argparse
import time

import mlx.core as mx
import numpy as np
from common import emit

from xlstm_metal import xLSTMRunner
from xlstm_metal.blocks import NodeContext


def poison(max_log2: int = 30) -> None:
    """Leave NaN-filled buffers of every power-of-two size (and 1.5x) in MLX's buffer cache.
    (``mx.full`` would not do: it broadcasts one scalar without filling a buffer.)"""
    arrs = []
    for e in range(8, max_log2 - 1):
        for n in (1 << e, 3 << (e - 1)):
            arrs.append(mx.random.uniform(shape=(n // 4,)) * float("nan"))
    mx.eval(arrs)
    del arrs


def to_np(a) -> np.ndarray:
    return np.array(a.astype(mx.float32))


def compare(a, b) -> dict:
    """GPU result ``a`` vs CPU result ``b``: "gpu_finite" is False when ``a`` has a NaN/inf where ``b`` has none
    (intended infinities, such as -inf masks, must match exactly)."""
    same_nonfinite = np.array_equal(a[~np.isfinite(b)], b[~np.isfinite(b)]) if a.shape == b.shape else False
    res = {"gpu_finite": bool(same_nonfinite and np.isfinite(a[np.isfinite(b)]).all()), "cpu_finite": bool(np.isfinite(b).all())}
    if res["gpu_finite"]:
        ok = np.isfinite(b)
        res["max_abs_diff"] = float(np.max(np.abs(a[ok] - b[ok]))) if ok.any() else 0.0
        res["max_abs"] = float(np.max(np.abs(b[ok]))) if ok.any() else 0.0
    return res


def breakdown_mlstm(block, x, ctx, max_log2: int = 30) -> list:
    """The mLSTM layer's forward, one operation at a time: each on the GPU after poisoning, vs the CPU
    on the same (GPU-computed) inputs. Returns one row per operation."""
    from xlstm_metal.blocks.multihead_layer_norm import multihead_layer_norm
    from xlstm_metal.blocks.ops import soft_cap

    p, nh = block.params, block.local_heads
    B, S, _ = x.shape
    heads = lambda t: t.reshape(B, S, nh, -1).transpose(0, 2, 1, 3)  # noqa: E731
    ops = [
        ("q", lambda v: block.q(v["x"])), ("k", lambda v: block.k(v["x"])), ("v", lambda v: block.v(v["x"])),
        ("o", lambda v: block.ogate_preact(v["x"])), ("i_raw", lambda v: block.igate_preact(v["x"])),
        ("f_raw", lambda v: block.fgate_preact(v["x"])),
        ("i", lambda v: soft_cap(v["i_raw"], p.gate_soft_cap)), ("f", lambda v: soft_cap(v["f_raw"], p.gate_soft_cap)),
        ("cell", lambda v: ctx.kernel.fn(heads(v["q"]), heads(v["k"]), heads(v["v"]), v["i"].transpose(0, 2, 1),
                                         v["f"].transpose(0, 2, 1), None, chunk_size=ctx.chunk_size or 64, eps=p.eps)[0]),
        ("cell_state", lambda v: ctx.kernel.fn(heads(v["q"]), heads(v["k"]), heads(v["v"]), v["i"].transpose(0, 2, 1),
                                               v["f"].transpose(0, 2, 1), None, chunk_size=ctx.chunk_size or 64, eps=p.eps)[1]),
        ("norm", lambda v: multihead_layer_norm(v["cell"].transpose(0, 2, 1, 3), block.multihead_norm.weight, None,
                                                p.norm_eps, p.norm_reduction_force_float32)),
        ("gated", lambda v: mx.sigmoid(v["o"]) * v["norm"]), ("out", lambda v: block.out_proj(v["gated"])),
    ]
    vals, rows = {"x": x}, []
    for name, fn in ops:
        poison(max_log2)
        out = fn(vals)
        mx.eval(out)
        with mx.stream(mx.cpu):
            ref = fn(vals)
            mx.eval(ref)
        pairs = zip(out, ref) if isinstance(out, tuple) else [(out, ref)]
        rows.append({"op": name, "cmp": [compare(to_np(a), to_np(b)) for a, b in pairs]})
        vals[name] = out
    return rows


def param_snapshot(model, max_size: int = 1 << 22) -> dict:
    """Copies of every parameter up to ``max_size`` elements (small ones are the suspects)."""
    from mlx.utils import tree_flatten

    return {k: to_np(v) for k, v in tree_flatten(model.parameters()) if v.size <= max_size}


def changed_params(model, snap: dict) -> list:
    from mlx.utils import tree_flatten

    now = dict(tree_flatten(model.parameters()))
    out = []
    for k, ref in snap.items():
        cur = to_np(now[k])
        if not np.array_equal(cur, ref, equal_nan=True):
            out.append({"key": k, "shape": list(ref.shape), "dtype": str(now[k].dtype),
                        "n_changed": int(np.sum(cur != ref)), "finite": bool(np.isfinite(cur).all())})
    return out


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--spec", default="xlstm_tiny")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--nodes", type=int, default=12, help="compare only the first N nodes on the CPU (it is slow)")
    p.add_argument("--breakdown", help="also break this mLSTM node down op by op")
    p.add_argument("--max-log2", type=int, default=30, help="poison buffers up to 2**this bytes")
    p.add_argument("--out")
    a = p.parse_args(argv)
    runner = xLSTMRunner.from_spec(a.spec, dtype=a.dtype)
    mx.eval(runner.model.parameters())
    g = runner.graph
    vocab = g.node(g.outputs[0])["out_type"].dim
    x = mx.array(np.random.default_rng(0).integers(0, vocab, size=(1, a.seq_len)), dtype=mx.int32)
    res = {"device": str(mx.default_device()), "seq_len": a.seq_len, "dtype": a.dtype, "runs": []}

    snap = param_snapshot(runner.model)
    res["n_params_snapshotted"] = len(snap)
    # Whole model, poisoned cache, repeated.
    for trial in range(3):
        poison(a.max_log2)
        logits, state = runner(x)
        mx.eval(logits, state.arrays())
        res["runs"].append({"poisoned": True, "logits_finite": bool(mx.all(mx.isfinite(logits.astype(mx.float32))).item()),
                            "state_finite": all(bool(mx.all(mx.isfinite(s)).item()) for s in state.arrays()),
                            "changed_params": changed_params(runner.model, snap)[:20]})

    # Node by node: GPU (poisoned) vs CPU on identical inputs.
    plan = runner.plan(a.seq_len)
    vals = {g.inputs[0]: x}
    nodes, first_bad = [], None
    for k, step in enumerate(plan.steps):
        block = g.block(step.node)
        ctx = NodeContext(step.node, step.kernel, step.chunk_size)
        ins = [vals[i] for i in step.inputs]
        if step.node == a.breakdown:
            res["breakdown_requested"] = {"node": step.node, "ops": breakdown_mlstm(block, ins[0], ctx, a.max_log2)}
        poison(a.max_log2)
        out, new = block(ins, None, ctx)
        mx.eval(out, new)
        row = {"node": step.node, "type": step.type}
        if k < a.nodes:
            t = time.perf_counter()
            with mx.stream(mx.cpu):
                out_c, new_c = block(ins, None, ctx)
                mx.eval(out_c, new_c)
            row["cpu_s"] = round(time.perf_counter() - t, 2)
            row["out"] = compare(to_np(out), to_np(out_c))
            if new is not None:
                row["state"] = [compare(to_np(s), to_np(sc)) for s, sc in zip(new, new_c)]
            scale = max(1.0, row["out"].get("max_abs", 1.0))
            tol = 0.05 if a.dtype != "float32" else 1e-3
            bad = (not row["out"]["gpu_finite"]) or row["out"].get("max_abs_diff", 0.0) > tol * scale or any(
                not s["gpu_finite"] or s.get("max_abs_diff", 0.0) > tol * max(1.0, s.get("max_abs", 1.0))
                for s in row.get("state", []))
            if bad and first_bad is None:
                first_bad = step.node
        else:
            row["gpu_finite"] = bool(mx.all(mx.isfinite(out.astype(mx.float32))).item())
            if not row["gpu_finite"] and first_bad is None:
                first_bad = step.node
                if step.type == "mlstm":
                    res["breakdown"] = {"node": step.node, "ops": breakdown_mlstm(block, ins[0], ctx, a.max_log2)}
        nodes.append(row)
        vals[step.node] = out
    res["first_bad_node"] = first_bad
    res["nodes"] = nodes
    emit(res, a.out)


if __name__ == "__main__":
    main()
