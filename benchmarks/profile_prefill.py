"""One batch-1 prefill of a model for a profiler: ``--warmup`` untimed prefills (the first traces and compiles),
then ``--runs`` timed ones, each evaluated. Prints one JSON object with the wall time per prefill. With
``--profile-range`` only the timed prefills are profiled (cuProfilerStart/Stop around them):

    ncu --profile-from-start off --csv --metrics gpu__time_duration.sum \
        python3 benchmarks/profile_prefill.py --spec xlstm_7b --seq-len 4096 --profile-range \
        | python3 benchmarks/ncu_summary.py --calls 1
"""
from __future__ import annotations

import argparse
import statistics
import time

import mlx.core as mx
from common import cuda_profiler_range, emit

from xlstm_metal import xLSTMRunner


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--spec", default="xlstm_tiny")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--seq-len", type=int, default=4096)
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--profile-range", action="store_true",
                   help="profile only the timed prefills: cuProfilerStart/Stop around them (ncu --profile-from-start off)")
    p.add_argument("--eval-ahead", default="1", help="comma-separated runner.eval_ahead values, timed in turns")
    p.add_argument("--out")
    a = p.parse_args(argv)
    runner = xLSTMRunner.from_spec(a.spec, dtype=a.dtype, seed=0)
    mx.eval(runner.model.parameters())
    vocab = runner.graph.node(runner.graph.outputs[0])["out_type"].dim
    x = mx.random.randint(0, vocab, (1, a.seq_len))

    def prefill():
        logits, state = runner(x, logits="last")
        mx.eval(logits, state.arrays())

    aheads = [int(v) for v in a.eval_ahead.split(",")]
    for _ in range(a.warmup):
        prefill()
    mx.synchronize()
    start, stop = cuda_profiler_range(a.profile_range)
    if start:
        start()
    walls, peaks = {n: [] for n in aheads}, {}
    for _ in range(a.runs):
        for n in aheads:  # in turns, so drift within the run hits every setting alike
            runner.eval_ahead = n
            mx.reset_peak_memory()
            t0 = time.perf_counter()
            prefill()
            mx.synchronize()
            walls[n].append(time.perf_counter() - t0)
            peaks[n] = max(peaks.get(n, 0.0), mx.get_peak_memory() / 1e9)
    if stop:
        stop()
    res = {"spec": a.spec, "dtype": a.dtype, "seq_len": a.seq_len, "runs": a.runs}
    for n, w in walls.items():
        res[f"wall_ms_per_prefill_ahead{n}"] = 1e3 * statistics.median(w)
        res[f"tok_s_ahead{n}"] = a.seq_len / statistics.median(w)
        res[f"peak_GB_ahead{n}"] = peaks[n]
    emit(res, a.out)


if __name__ == "__main__":
    main()
