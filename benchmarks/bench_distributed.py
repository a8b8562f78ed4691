"""Head-parallel inference throughput across ranks; prints one JSON object (from rank 0).

    mlx.launch -n 2 --backend nccl python benchmarks/bench_distributed.py --spec xlstm_7b --dtype bfloat16
    python benchmarks/bench_distributed.py --spec xlstm_7b --dtype bfloat16     # one rank, one GPU
    mlx.launch -n 2 --backend ring python benchmarks/bench_distributed.py --spec xlstm_tiny   # CPU check

Also checks that the sharded model's logits equal the unsharded model's on rank 0 (--check).
"""
from __future__ import annotations

import argparse

import mlx.core as mx
from mlx.utils import tree_flatten

from xlstm_metal import xLSTMRunner
from xlstm_metal.distributed import shard_heads, world
from common import timed, emit


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--spec", default="xlstm_tiny")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--prefill", default="256")
    p.add_argument("--decode-steps", type=int, default=20)
    p.add_argument("--check", action="store_true", help="compare logits with the unsharded model (needs its memory)")
    p.add_argument("--out")
    a = p.parse_args(argv)
    group = world()
    runner = xLSTMRunner.from_spec(a.spec, dtype=a.dtype, seed=0)
    reference = None
    probe = mx.random.randint(0, 256, (1, 32), key=mx.random.key(1))
    if a.check:
        reference = runner(probe)[0]
        mx.eval(reference)
    shard_heads(runner, group)
    for _, v in tree_flatten(runner.model.parameters()):
        mx.eval(v)
    res = {"spec": a.spec, "dtype": a.dtype, "ranks": group.size(), "device": str(mx.default_device())}
    if reference is not None:
        got = runner(probe)[0]
        diff = mx.abs(got.astype(mx.float32) - reference.astype(mx.float32)).max()
        res["max_logit_diff_vs_unsharded"] = float(diff.item())
    vocab = 256
    for S in map(int, a.prefill.split(",")):
        x = mx.random.randint(0, vocab, (1, S), key=mx.random.key(S))

        def prefill():
            lg, st = runner(x, logits="last")
            mx.eval(lg, st.arrays())

        res[f"prefill_tok_s_S{S}"] = S / timed(prefill, warm=1, iters=3)
    lg, st = runner(probe, logits="last")
    holder = {"tok": mx.argmax(lg[:, -1], axis=-1)[:, None], "st": st}

    def step():
        lg, st = runner(holder["tok"], holder["st"])
        holder["tok"], holder["st"] = mx.argmax(lg[:, -1], axis=-1)[:, None], st
        mx.eval(holder["tok"], st.arrays())

    res["decode_tok_s"] = 1 / timed(step, warm=3, iters=a.decode_steps)
    if group.rank() == 0:
        emit(res, a.out)


if __name__ == "__main__":
    main()
