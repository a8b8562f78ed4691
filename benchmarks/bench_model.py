"""Prefill and decode throughput of a spec with random weights; prints one JSON object.

    python benchmarks/bench_model.py --spec xlstm_tiny --prefill 128,512 --decode-steps 64
    python benchmarks/bench_model.py --spec xlstm_7b --dtype bfloat16 --prefill 1024,4096

Absolute numbers mean something only on the GPU machine; compare runs made in the same process
(or with --official JSON from shared/gpu/official_baseline.py measured in the same job), which
this script turns into ratios.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time

import mlx.core as mx
from mlx.utils import tree_flatten

from xlstm_metal import xLSTMRunner
from xlstm_metal.kernels import inference_mode
from common import timed, emit


def stream_tok_s(runner, tok, state, steps: int, warm: int = 5) -> float:
    """Greedy tokens/s of ``runner.stream`` from ``state``: ``steps`` tokens timed after ``warm`` untimed ones. Unlike
    ``step`` in ``main``, which evaluates every token before building the next, generation queues token t+1 before it
    reads token t (``mx.async_eval``), so the host's work overlaps the GPU's."""
    ids = [int(t) for t in tok[0].tolist()]
    last = None
    for k, resp in enumerate(runner.stream(ids, state=state, max_tokens=warm + steps, eos_token_ids=set())):
        if k == warm - 1:
            t0 = time.perf_counter()
        last = k
    assert last == warm + steps - 1, f"stream stopped after {last + 1} tokens"
    return steps / (time.perf_counter() - t0)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--spec", default="xlstm_tiny")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--prefill", default="128,512", help="comma-separated prompt lengths")
    p.add_argument("--decode-steps", type=int, default=64)
    p.add_argument("--decode-context", default="16", help="comma-separated context lengths before decoding")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--official", help="JSON file from official_baseline.py measured in the same run, for ratios")
    p.add_argument("--prefill-chunks", default="", help="also time prefill with these mLSTM chunk sizes, e.g. 128,256")
    p.add_argument("--decode-rounds", type=int, default=3,
                   help="time each step kernel this many times, alternating their order; report the median")
    p.add_argument("--prefill-segments", default="",
                   help="also time prefill (and its peak memory) with these prefill segment lengths, e.g. 4096")
    p.add_argument("--prefill-kernels", default="",
                   help="also time prefill with these chunkwise kernels pinned (e.g. cuda_mma_chunkwise), at the default "
                        "segment length and at each --prefill-segments length")
    p.add_argument("--gemv", action="store_true", help="route one-row products through kernels/gemv.py (CUDA, bf16)")
    p.add_argument("--differentiable", action="store_true",
                   help="time outside inference_mode: the compiled decode step traced with the fused kernels' "
                        "gradient wrapper (the prefill evaluates as it goes, so it runs them bare either way)")
    p.add_argument("--no-reference-gradient", action="store_true",
                   help="ablation: unwrap the fused kernels everywhere (with --differentiable: what the wrapper costs)")
    p.add_argument("--out", help="also write the JSON here")
    a = p.parse_args(argv)
    if a.no_reference_gradient:
        import dataclasses

        from xlstm_metal.kernels import registry
        for key, info in list(registry._KERNELS.items()):
            if getattr(info.fn, "gradient_wrapped", False):
                registry._KERNELS[key] = dataclasses.replace(info, fn=info.fn.__wrapped__)
    if a.gemv:
        from xlstm_metal.kernels import gemv
        if not gemv.enable():
            raise SystemExit("--gemv: the GEMV kernel is not available here (needs CUDA and a passing first-use check)")

    with contextlib.nullcontext() if a.differentiable else inference_mode():
        return measure(a)


def measure(a) -> dict:
    runner = xLSTMRunner.from_spec(a.spec, dtype=a.dtype, seed=0)
    for _, v in tree_flatten(runner.model.parameters()):  # materialise one tensor at a time
        mx.eval(v)
    vocab = runner.graph.node(runner.graph.outputs[0])["out_type"].dim
    res = {"spec": a.spec, "dtype": a.dtype, "device": str(mx.default_device()), "batch": a.batch, "gemv": a.gemv,
           "inference_mode": not a.differentiable, "reference_gradient": not a.no_reference_gradient,
           "params_B": runner.num_parameters() / 1e9, "mlx": mx.__version__}
    for S in map(int, a.prefill.split(",")):
        x = mx.random.randint(0, vocab, (a.batch, S))

        def prefill():
            logits, state = runner(x, logits="last")
            mx.eval(logits, state.arrays())

        mx.reset_peak_memory()
        res[f"prefill_tok_s_S{S}"] = a.batch * S / timed(prefill, warm=1, iters=a.iters)
        res[f"prefill_peak_GB_S{S}"] = mx.get_peak_memory() / 1e9
        for L in filter(None, a.prefill_chunks.split(",")):  # the same prefill at other chunk sizes, same run
            runner.set_overrides({n: {"chunk_size": int(L)} for n in runner.graph.compute_nodes()
                                  if runner.graph.node(n)["block_cls"].kernel_family == "mlstm"})
            res[f"prefill_tok_s_S{S}_chunk{L}"] = a.batch * S / timed(prefill, warm=1, iters=a.iters)
            runner.set_overrides({})
        for seg in filter(None, a.prefill_segments.split(",")):  # the same prefill in other segment lengths
            default = runner.segment_len
            runner.set_segment_len(int(seg))
            mx.reset_peak_memory()
            res[f"prefill_tok_s_S{S}_segment{seg}"] = a.batch * S / timed(prefill, warm=1, iters=a.iters)
            res[f"prefill_peak_GB_S{S}_segment{seg}"] = mx.get_peak_memory() / 1e9
            runner.set_segment_len(default)
        mlstm = [n for n in runner.graph.compute_nodes() if runner.graph.node(n)["block_cls"].kernel_family == "mlstm"]
        for name in filter(None, a.prefill_kernels.split(",")):  # the same prefill with another chunkwise kernel
            runner.set_overrides({n: {"kernel": name} for n in mlstm})
            default = runner.segment_len
            for seg in [None] + [int(x) for x in filter(None, a.prefill_segments.split(","))]:
                tag = f"_{name}" + (f"_segment{seg}" if seg else "")
                if seg:
                    runner.set_segment_len(seg)
                mx.reset_peak_memory()
                res[f"prefill_tok_s_S{S}{tag}"] = a.batch * S / timed(prefill, warm=1, iters=a.iters)
                res[f"prefill_peak_GB_S{S}{tag}"] = mx.get_peak_memory() / 1e9
            runner.set_segment_len(default)
            runner.set_overrides({})
    from xlstm_metal.kernels import current_device, kernels

    step_kernels = [k.name for k in kernels("mlstm", "step") if k.supports(device=current_device(), dtype=a.dtype) is None]
    res["step_kernels"] = step_kernels
    mlstm_nodes = [n for n in runner.graph.compute_nodes() if runner.graph.node(n)["block_cls"].kernel_family]
    for ctx in map(int, a.decode_context.split(",")):
        x = mx.random.randint(0, vocab, (a.batch, ctx))
        logits, state = runner(x, logits="last")
        tok = mx.argmax(logits[:, -1], axis=-1)[:, None]
        mx.eval(tok, state.arrays())
        holder = {"state": state, "tok": tok}

        def step():
            lg, st = runner(holder["tok"], holder["state"])
            holder["tok"] = mx.argmax(lg[:, -1], axis=-1)[:, None]
            holder["state"] = st
            mx.eval(holder["tok"], st.arrays())

        res[f"decode_tok_s_ctx{ctx}"] = a.batch / timed(step, warm=5, iters=a.decode_steps)  # default selection
        # Each available step kernel, pinned, in the same run: batch-1 decoding is noisy and drifts within a
        # run, so the kernels take turns (order reversed every round) and each reports its median round.
        runs = {name: [] for name in step_kernels}
        for r in range(max(1, a.decode_rounds)):
            for name in (step_kernels if r % 2 == 0 else step_kernels[::-1]):
                runner.set_overrides({n: {"kernel": name} for n in mlstm_nodes})
                holder.update(state=state, tok=tok)
                runs[name].append(a.batch / timed(step, warm=5, iters=a.decode_steps))
        for name, vals in runs.items():
            res[f"decode_tok_s_ctx{ctx}_{name}"] = statistics.median(vals)
            res[f"decode_tok_s_ctx{ctx}_{name}_rounds"] = vals
        runner.set_overrides({})
        if a.batch == 1:  # what a user of runner.stream sees: the next token queued while this one is read
            res[f"decode_stream_tok_s_ctx{ctx}"] = stream_tok_s(runner, tok, state, a.decode_steps)
    res["weights_GB"] = sum(v.nbytes for _, v in tree_flatten(runner.model.parameters())) / 1e9
    if a.official:
        with open(a.official) as fh:
            off = json.load(fh)
        res["official"] = off
        for k, v in list(res.items()):
            if isinstance(v, float) and k in off and off[k]:
                res[f"ratio_{k}_ours_over_official"] = v / off[k]
    emit(res, a.out)
    return res


if __name__ == "__main__":
    main()
