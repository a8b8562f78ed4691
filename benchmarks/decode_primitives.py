"""The primitives of the compiled batch-1 decode step, per layer: what a token costs in launches.

    python benchmarks/decode_primitives.py                       # xlstm_7b structure, bfloat16, both ways
    python benchmarks/decode_primitives.py --kernel native_step  # with the native (CPU/GPU ops) step cell

Builds the spec with small dims (same structure, same number of heads, ``--dim`` wide) at 1 and 2
blocks, compiles the runner's decode step, and reads the compiled graph back with
``mx.export_to_dot`` (the replayed tape: fused elementwise chains show as one ``Compiled...``
node). Per block = the 2-block count minus the 1-block count; the rest is embedding, out norm,
lm_head. Runs with merged input projections and without.

The graph is built on the CPU, where some ops are not what the GPU runs, so those are stood in
for by one ``Depends`` node each (outputs of the right shape that depend on every input), and
named in ``standins``:

- the GPU step kernel (``--kernel fused``, default): the real fused step's input preparation (its
  ``_make_step`` wrapper) runs unchanged, only the launch is stood in; likewise the fused residual add +
  RMSNorm and per-head norm + output gate kernels (``kernels/add_rms_norm.py``, ``head_norm_gate.py``);
- ``mx.fast.rms_norm`` / ``mx.fast.layer_norm``: one kernel on the GPU, a chain of ops on the CPU
  (``--cpu-norms`` keeps the CPU chains).

``view`` ops (reshape, transpose, slice, broadcast, ...) normally launch nothing (they copy only
when an input is not contiguous); the rest are about one launch each.
"""
from __future__ import annotations

import argparse
import io
import re
from collections import Counter

import mlx.core as mx
import numpy as np
import yaml
from common import emit

from xlstm_metal import xLSTMRunner
from xlstm_metal.kernels import inference_mode
from xlstm_metal.spec import shipped_spec_path

VIEWS = {"Reshape", "Transpose", "Slice", "ExpandDims", "Squeeze", "Broadcast", "Flatten", "Unflatten", "AsStrided",
         "StopGradient"}


def primitives(outputs) -> Counter:
    dot = io.StringIO()
    mx.export_to_dot(dot, *outputs)
    return Counter(re.findall(r'label ="([^"]+)", shape=rectangle', dot.getvalue()))


STANDINS: Counter = Counter()  # stood-in ops met while tracing


def standin(kind: str, inputs, shapes, dtypes):
    """One ``Depends`` node: outputs (constant data, no nodes of their own) that depend on every input."""
    STANDINS[kind] += 1
    outs = [mx.array(np.zeros(s, np.float32), dtype=d) for s, d in zip(shapes, dtypes)]
    return mx.depends(outs, [a for a in inputs if a is not None])


def standin_kernel(kind: str = "fused_step_kernel"):
    """Called like an ``mx.fast.cuda_kernel`` kernel."""
    def launch(*, inputs, output_shapes, output_dtypes, **_):
        return standin(kind, inputs, output_shapes, output_dtypes)
    return launch


def standin_norms():
    def rms_norm(x, weight, eps, **_):
        return standin("fast.rms_norm", [x, weight], [x.shape], [x.dtype])[0]

    def layer_norm(x, weight, bias, eps, **_):
        return standin("fast.layer_norm", [x, weight, bias], [x.shape], [x.dtype])[0]

    mx.fast.rms_norm, mx.fast.layer_norm = rms_norm, layer_norm


def build(spec_name: str, blocks: int, dim: int, vocab: int, dtype: str, merge: bool, kernel: str, q_bits: int | None):
    data = yaml.safe_load(shipped_spec_path(spec_name).read_text())
    data["dims"].update({"embedding_dim": dim, "num_blocks": blocks, "vocab_size": vocab})
    runner = xLSTMRunner.from_spec(data, dtype=dtype, seed=0, merge_projections=merge)
    if q_bits:
        runner.quantize(bits=q_bits, group_size=64)
    if kernel == "fused":
        from xlstm_metal.kernels import KernelInfo, register_kernel
        from xlstm_metal.kernels.mlstm.fused_step import _make_step

        name = "standin_fused_step"
        try:
            register_kernel(KernelInfo("mlstm", "step", name, _make_step("cuda", make_kernel=standin_kernel),
                                       devices=frozenset({"cpu", "gpu"}), caps_gates=True, differentiable=False,
                                       doc="the fused step, launch stood in"))
        except ValueError:
            pass  # registered by an earlier build
        from xlstm_metal.kernels import add_rms_norm, head_norm_gate, registry
        for family, module in (("add_rms_norm", add_rms_norm), ("head_norm_gate", head_norm_gate)):
            info = KernelInfo(family, "fused", f"standin_{family}", module._make("cuda", make_kernel=lambda f=family: standin_kernel(f"{f}_kernel")),
                              backend="standin", priority=50, differentiable=False, doc="the fused kernel, launch stood in")
            registry._KERNELS[(family, info.name)] = info
        kernel = name
    runner.set_overrides({n: {"kernel": kernel} for n in runner.graph.stateful_nodes()})
    mx.eval(runner.model.parameters())
    return runner


def decode_graph(runner) -> Counter:
    state = runner.init_state(1)
    mx.eval(state.arrays())
    tok = mx.array([[3]])
    STANDINS.clear()
    with inference_mode():  # as generation runs it
        runner(tok, state)  # traces (and runs) the compiled step
    standins = Counter(STANDINS)
    logits, entries = runner._decode_fn[True](tok, state.entries)  # lazy: the replayed compiled graph
    c = primitives([logits, *[a for e in entries.values() for a in e]])
    assert c["Depends"] == sum(standins.values()), (c, standins)
    del c["Depends"]
    return c + Counter({f"[{k}]": v for k, v in standins.items()})


def summary(c: Counter) -> dict:
    launches = {k: v for k, v in sorted(c.items()) if k not in VIEWS and v}
    views = {k: v for k, v in sorted(c.items()) if k in VIEWS and v}
    return {"primitives": sum(c.values()), "launches": sum(launches.values()), "views": sum(views.values()),
            "launch_ops": launches, "view_ops": views}


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--spec", default="xlstm_7b")
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--vocab", type=int, default=512)
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--kernel", default="fused", help="fused (the GPU step kernel, launch stood in) or a step kernel name")
    p.add_argument("--q-bits", type=int, help="quantize (group size 64) before counting")
    p.add_argument("--cpu-norms", action="store_true", help="count the CPU's op chains for mx.fast.rms_norm/layer_norm")
    p.add_argument("--out")
    a = p.parse_args(argv)
    if not a.cpu_norms:
        standin_norms()
    res = {"spec": a.spec, "dim": a.dim, "dtype": a.dtype, "kernel": a.kernel, "q_bits": a.q_bits}
    for merge in (False, True):
        one = decode_graph(build(a.spec, 1, a.dim, a.vocab, a.dtype, merge, a.kernel, a.q_bits))
        two = decode_graph(build(a.spec, 2, a.dim, a.vocab, a.dtype, merge, a.kernel, a.q_bits))
        per_block = two - one
        assert not (one - two), "a 2-block graph lacks ops of the 1-block graph"
        key = "merged" if merge else "separate"
        res[key] = {"per_block": summary(per_block), "outside_blocks": summary(one - per_block)}
    emit(res, a.out)


if __name__ == "__main__":
    main()
