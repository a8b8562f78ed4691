"""Where a long prefill's peak memory goes on this device (JSON out): the bytes over the weights, per setting.

Why: the issue's target is a 32k-token 7B prefill at weights + 2 GB. An H200 measured + 1.49 GB in run 8 and
+ 3.14 GB in run 9 for the same 2048-token segments, while one segment's layers need far less. This separates
the candidates, each timed too: layers left in flight (``eval_ahead`` 0 / 1), frees that land late
(``mx.synchronize()`` after each segment; ``layer``: every node evaluated and waited for, then a synchronize per
segment), and the segment length. The prefill loop here is the runner's (``execute`` per segment, evaluating as it
goes), with the synchronizations added."""
from __future__ import annotations

import argparse
import time

import mlx.core as mx
from common import emit
from mlx.utils import tree_flatten

from xlstm_metal import xLSTMRunner
from xlstm_metal.kernels import inference_mode
from xlstm_metal.runtime import execute


def prefill(runner: xLSTMRunner, x: mx.array, segment: int, ahead: int, sync: str) -> mx.array:
    """The runner's segmented prefill; returns the last position's logits. ``sync``: none / segment / layer."""
    S = x.shape[1]
    state = None
    for a in range(0, S, segment):
        b = min(S, a + segment)
        plan = runner.plan(b - a)
        if sync == "layer":  # every node evaluated, each waited for before the next is built
            outs, state = execute(runner.graph, plan, x[:, a:b], state, eval_every="node", eval_ahead=0,
                                  last_only=True)
        else:
            outs, state = execute(runner.graph, plan, x[:, a:b], state, eval_every="stateful", eval_ahead=ahead,
                                  last_only=True)
        mx.eval(list(outs.values()), state.arrays())
        if sync != "none":
            mx.synchronize()
    return outs[runner.graph.outputs[0]]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--spec", default="xlstm_7b")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--seq-len", type=int, default=32768)
    p.add_argument("--segments", default="2048,1024")
    p.add_argument("--settings", default="1:none,0:none,1:segment,0:segment,0:layer",
                   help="comma-separated eval_ahead:sync pairs (sync: none / segment / layer; layer ignores eval_ahead)")
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--out")
    a = p.parse_args(argv)
    runner = xLSTMRunner.from_spec(a.spec, dtype=a.dtype, seed=0)
    params = [v for _, v in tree_flatten(runner.model.parameters())]
    for v in params:  # materialised one tensor at a time
        mx.eval(v)
    runner.set_segment_len(None)  # the loop here segments; plans are per segment length
    weights = sum(v.nbytes for v in params)
    vocab = runner.graph.node(runner.graph.outputs[0])["out_type"].dim
    x = mx.random.randint(0, vocab, (1, a.seq_len))
    mx.eval(x)
    mx.synchronize()
    res = {"spec": a.spec, "dtype": a.dtype, "seq_len": a.seq_len, "device": str(mx.default_device()),
           "weights_GB": weights / 1e9, "active_before_GB": mx.get_active_memory() / 1e9, "settings": []}
    # the loop here is the runner's: the same logits as one unsegmented runner prefill (up to rounding)
    want, _ = runner(x, logits="last")
    segments = [int(v) for v in a.segments.split(",")]
    res["max_abs_diff_vs_runner"] = float(mx.abs(prefill(runner, x, segments[0], 1, "none").astype(mx.float32)
                                                  - want.astype(mx.float32)).max())
    with inference_mode():
        for seg in segments:
            for setting in a.settings.split(","):
                ahead, sync = setting.split(":")
                prefill(runner, x, seg, int(ahead), sync)  # warm-up: traces, compiles, fills the cache
                mx.synchronize()
                walls, peak = [], 0
                for _ in range(a.runs):
                    mx.reset_peak_memory()
                    t0 = time.perf_counter()
                    prefill(runner, x, seg, int(ahead), sync)
                    mx.synchronize()
                    walls.append(time.perf_counter() - t0)
                    peak = max(peak, mx.get_peak_memory())
                res["settings"].append({"segment": seg, "eval_ahead": int(ahead), "sync": sync,
                                        "tok_s": a.seq_len / min(walls), "peak_over_weights_GB": (peak - weights) / 1e9,
                                        "active_after_GB": mx.get_active_memory() / 1e9})
    emit(res, a.out)


if __name__ == "__main__":
    main()
