"""Training throughput and peak memory of `xlstm_metal.train.Trainer` (as `xlstm-metal train` runs it: AdamW,
gradient clipping, the compiled step) on random tokens, at a spec's size or one given by --dims; prints JSON.

    python benchmarks/bench_train.py --spec xlstm_tiny --batch 4 --seq-len 64 --steps 5
    python benchmarks/bench_train.py --spec xlstm_7b --dims embedding_dim=768,num_blocks=12,num_heads=4 \
        --dtype bfloat16 --batch 8 --seq-len 2048 --steps 10

Reports the time from the start (model built, first step traced, compiled and run) to the first finished step,
tokens/s over the timed steps after --warm untimed ones, and peak memory over the whole run and the timed steps.
"""
from __future__ import annotations

import argparse
import tempfile
import time

_START = time.perf_counter()

import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402
from common import emit, sized_spec  # noqa: E402

from xlstm_metal import xLSTMRunner  # noqa: E402
from xlstm_metal.train import TokenBatches, TrainConfig, Trainer  # noqa: E402


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spec", default="xlstm_tiny")
    p.add_argument("--dims", default="", help="comma-separated name=value replacing the spec's dims")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--steps", type=int, default=10, help="timed steps")
    p.add_argument("--warm", type=int, default=2, help="untimed steps after the first")
    p.add_argument("--no-compile", action="store_true", help="run the training step uncompiled (TrainConfig.compile)")
    p.add_argument("--out")
    a = p.parse_args(argv)
    mx.reset_peak_memory()
    runner = xLSTMRunner.from_spec(sized_spec(a.spec, a.dims), dtype=a.dtype, seed=0)
    vocab = runner.graph.node(runner.graph.outputs[0])["out_type"].dim
    tokens = np.random.default_rng(0).integers(0, vocab, size=max(4 * a.batch * (a.seq_len + 1), 10_000))
    total = 1 + a.warm + a.steps
    # one step more than run, no evaluation or saving on the way: nothing is written
    cfg = TrainConfig(steps=total + 1, batch_size=a.batch, seq_len=a.seq_len, warmup=1, eval_every=10**9,
                      save_every=10**9, log_every=10**9, compile=not a.no_compile)
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(runner, TokenBatches(tokens.astype(np.int32), a.batch, a.seq_len), cfg, out, progress=False)
        t0 = time.perf_counter()
        trainer.train(resume=False, stop_after=1)
        first = time.perf_counter()
        trainer.train(resume=False, stop_after=1 + a.warm)
        mx.synchronize()
        peak_before = mx.get_peak_memory()
        mx.reset_peak_memory()
        t1 = time.perf_counter()
        log = trainer.train(resume=False, stop_after=total)
        mx.synchronize()
        wall = time.perf_counter() - t1
    res = {"spec": a.spec, "dims": a.dims, "dtype": a.dtype, "batch": a.batch, "seq_len": a.seq_len, "steps": a.steps,
           "compiled": not a.no_compile, "device": str(mx.default_device()), "mlx": mx.__version__,
           "params_B": runner.num_parameters() / 1e9,
           "start_to_first_step_s": first - _START, "first_step_s": first - t0,
           "train_tok_s": a.steps * a.batch * a.seq_len / wall,
           "peak_GB": max(peak_before, mx.get_peak_memory()) / 1e9, "peak_timed_GB": mx.get_peak_memory() / 1e9,
           "loss_first": log.losses[0], "loss_last": log.losses[-1]}
    emit(res, a.out)
    return res


if __name__ == "__main__":
    main()
