"""Where the time goes: batch-1 decode or prefill of a model, run for a profiler, and the profilers' CSV summarised
per kernel; prints one JSON object.

    python benchmarks/profile.py prefill --spec xlstm_7b --seq-len 32768 --eval-ahead 0,1 --segments 2048,1024
    ncu --profile-from-start off --csv --metrics gpu__time_duration.sum \
        python3 benchmarks/profile.py decode --spec xlstm_7b --tokens 3 --profile-range \
        | python3 benchmarks/profile.py ncu --calls 3
    nsys profile -t cuda -o /tmp/decode python3 benchmarks/profile.py decode --spec xlstm_7b --tokens 40
    nsys stats -r cuda_gpu_kern_sum -f csv /tmp/decode.nsys-rep | python3 benchmarks/profile.py nsys --calls 43

`decode` / `prefill --profile-range` bracket the timed work with cuProfilerStart / cuProfilerStop, so that
`ncu --profile-from-start off` sees only it. `ncu` runs kernels one at a time at base clocks: its sums exceed wall
times; read them as shares. (Top-level imports stay in the standard library: this module shadows the standard
`profile` module for whatever imports it from this folder.)
"""
from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
from collections import defaultdict


def profiler_range(enabled: bool):
    """``(start, stop)`` for the work a profiler should see: the CUDA driver's cuProfilerStart / cuProfilerStop
    when ``enabled``, else no-ops."""
    if not enabled:
        return (lambda: None), (lambda: None)
    import ctypes

    cuda = ctypes.CDLL("libcuda.so.1")
    return cuda.cuProfilerStart, cuda.cuProfilerStop


def load(spec: str, dtype: str):
    import mlx.core as mx
    from mlx.utils import tree_flatten

    from xlstm_metal import xLSTMRunner

    runner = xLSTMRunner.from_spec(spec, dtype=dtype, seed=0)
    params = [v for _, v in tree_flatten(runner.model.parameters())]
    for v in params:  # materialised one tensor at a time
        mx.eval(v)
    return runner, sum(v.nbytes for v in params) / 1e9


def decode(a) -> dict:
    """``--warmup`` untimed tokens (the first traces and compiles the step), then ``--tokens`` timed ones, each
    evaluated before the next is built (every token launches the same kernels: divide a profile by tokens_run)."""
    import mlx.core as mx

    runner, _ = load(a.spec, a.dtype)
    start, stop = profiler_range(a.profile_range)
    state, tok = runner.init_state(1), mx.array([[3]])
    for k in range(a.warmup + a.tokens):
        if k == a.warmup:
            mx.synchronize()
            start()
            t0 = time.perf_counter()
        logits, state = runner(tok, state)
        mx.eval(logits, state.arrays())
    mx.synchronize()
    wall = time.perf_counter() - t0
    stop()
    return {"spec": a.spec, "dtype": a.dtype, "tokens": a.tokens, "tokens_run": a.warmup + a.tokens,
            "wall_ms_per_token": 1e3 * wall / a.tokens, "tok_s": a.tokens / wall}


def prefill(a) -> dict:
    """Batch-1 prefills per (prefill segment length, layers left in flight), timed in turns so that drift within the
    run hits every setting alike: tokens/s and the peak over the weights of the timed prefills."""
    import mlx.core as mx

    runner, weights = load(a.spec, a.dtype)
    vocab = runner.graph.node(runner.graph.outputs[0])["out_type"].dim
    x = mx.random.randint(0, vocab, (1, a.seq_len))
    settings = [(int(s) if s else runner.segment_len, int(n)) for s in a.segments.split(",")
                for n in a.eval_ahead.split(",")]

    def run(segment: int, ahead: int) -> float:
        runner.set_segment_len(segment)
        runner.eval_ahead = ahead
        t0 = time.perf_counter()
        logits, state = runner(x, logits="last")
        mx.eval(logits, state.arrays())
        mx.synchronize()
        return time.perf_counter() - t0

    for s in settings:
        for _ in range(a.warmup):
            run(*s)
    start, stop = profiler_range(a.profile_range)
    start()
    walls, peaks = defaultdict(list), defaultdict(float)
    for _ in range(a.runs):
        for s in settings:
            mx.reset_peak_memory()
            walls[s].append(run(*s))
            peaks[s] = max(peaks[s], mx.get_peak_memory() / 1e9 - weights)
    stop()
    return {"spec": a.spec, "dtype": a.dtype, "seq_len": a.seq_len, "runs": a.runs, "weights_GB": weights,
            "settings": [{"segment": seg, "eval_ahead": n, "tok_s": a.seq_len / statistics.median(walls[seg, n]),
                          "peak_over_weights_GB": peaks[seg, n]} for seg, n in settings]}


def summarise_ncu(lines, calls: int = 1, top: int = 25) -> dict:
    """GPU time per kernel name of an ``ncu --csv --metrics gpu__time_duration.sum`` log, per profiled call."""
    rows = list(csv.reader(line for line in lines if line.startswith('"')))
    if not rows:
        raise SystemExit("no ncu CSV rows on stdin (was the program profiled, and did it launch kernels?)")
    head, body = rows[0], rows[1:]
    name, unit, value = head.index("Kernel Name"), head.index("Metric Unit"), head.index("Metric Value")
    scale = {"ns": 1e-3, "nsecond": 1e-3, "us": 1.0, "usecond": 1.0, "ms": 1e3, "msecond": 1e3, "s": 1e6, "second": 1e6}
    total, count = defaultdict(float), defaultdict(int)
    for r in body:
        total[r[name][:90]] += float(r[value].replace(",", "")) * scale[r[unit]] / calls
        count[r[name][:90]] += 1
    return ranked({k: (us, count[k] / calls) for k, us in total.items()}, top)


def summarise_nsys(lines, calls: int, top: int = 25) -> dict:
    """GPU time per kernel of ``nsys stats -r cuda_gpu_kern_sum -f csv``, per profiled call (e.g. decoded token)."""
    rows = list(csv.reader(line for line in lines if line.count(",") >= 5))
    head = next((i for i, r in enumerate(rows) if "Total Time (ns)" in r and "Name" in r), None)
    if head is None:
        raise SystemExit("no cuda_gpu_kern_sum CSV on stdin (did the program launch kernels under nsys?)")
    cols = rows[head]
    t, n, name = cols.index("Total Time (ns)"), cols.index("Instances"), cols.index("Name")
    return ranked({r[name][:90]: (float(r[t]) / 1e3 / calls, int(r[n]) / calls)
                   for r in rows[head + 1:] if len(r) == len(cols)}, top)


def ranked(kernels: dict[str, tuple[float, float]], top: int) -> dict:
    """``{name: (us, launches)}`` per call as GPU-busy time, launches and the largest kernels with their shares."""
    busy = sum(us for us, _ in kernels.values())
    order = sorted(kernels, key=lambda k: -kernels[k][0])[:top]
    return {"gpu_busy_us_per_call": round(busy, 2), "launches_per_call": round(sum(c for _, c in kernels.values()), 2),
            "kernels": [{"name": k, "us_per_call": round(kernels[k][0], 2), "launches": round(kernels[k][1], 2),
                         "share": round(kernels[k][0] / busy, 4)} for k in order]}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("decode", "prefill"):
        s = sub.add_parser(name)
        s.add_argument("--spec", default="xlstm_tiny")
        s.add_argument("--dtype", default="bfloat16")
        s.add_argument("--warmup", type=int, default=2)
        s.add_argument("--profile-range", action="store_true", help="cuProfilerStart/Stop around the timed work")
        s.add_argument("--out")
    sub.choices["decode"].add_argument("--tokens", type=int, default=40)
    pre = sub.choices["prefill"]
    pre.add_argument("--seq-len", type=int, default=4096)
    pre.add_argument("--runs", type=int, default=1)
    pre.add_argument("--segments", default="", help="comma-separated prefill segment lengths (empty: the default)")
    pre.add_argument("--eval-ahead", default="1", help="comma-separated numbers of layers left in flight")
    for name in ("ncu", "nsys"):
        s = sub.add_parser(name, help=f"summarise {name}'s CSV (stdin) per kernel")
        s.add_argument("--calls", type=int, default=1, help="profiled calls (tokens, prefills) to divide by")
        s.add_argument("--top", type=int, default=25)
        s.add_argument("--out")
    a = p.parse_args(argv)
    if a.cmd in ("ncu", "nsys"):
        res = (summarise_ncu if a.cmd == "ncu" else summarise_nsys)(sys.stdin.read().splitlines(), a.calls, a.top)
    else:
        res = decode(a) if a.cmd == "decode" else prefill(a)
    text = json.dumps(res, indent=2)
    print(text)
    if a.out:
        open(a.out, "w").write(text + "\n")
    return res


if __name__ == "__main__":
    main()
