"""Training, ours against the official, in one run: tokens/s, peak memory and the time from process start to the
first finished step, each side in a fresh process (so start-up is honest), at named shapes; prints JSON.

    python benchmarks/bench_train.py --shapes mad,162m --steps 10 --out train.json        # ours and the official
    python benchmarks/bench_train.py --shapes 1.3b --out train.json   # adds to an existing train.json
    python benchmarks/bench_train.py --side ours --spec xlstm_tiny --batch 4 --seq-len 64 --steps 5   # one side

Ours is `xlstm_metal.train.Trainer` as `xlstm-metal train` runs it (AdamW, gradient clipping, its step compiled on
the GPU); the official is `xlstm` 2.0.6's `xLSTMLarge` in train mode (kernel `chunkwise--triton_limit_chunk` on
CUDA, `chunkwise--native_autograd` on the CPU), torch AdamW, gradient clipping, bf16 autocast on CUDA. Both train
on the same random tokens. Peak memory is the device allocator's (MLX's; torch.cuda's, on the CPU the process's
peak resident set for the official); tokens/s is over --steps timed steps after --warm untimed ones.
"""
from __future__ import annotations

import time

_START = time.time()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

# name -> (embedding_dim, num_blocks, num_heads, vocab, batch, seq_len, dtype): the shapes; the 1.3B-class
# one takes batch 4 so that both sides fit one 141 GB GPU; tiny: a smoke test. Our compiled kernels are named by
# their ops and dtypes, not shapes: the first bfloat16 shape of a job compiles them, later ones find them cached.
SHAPES = {"mad": (128, 4, 4, 64, 128, 128, "bfloat16"), "162m": (768, 12, 4, 50304, 8, 2048, "bfloat16"),
          "1.3b": (2048, 24, 4, 50304, 4, 2048, "bfloat16"), "tiny": (32, 1, 2, 64, 2, 64, "float32")}
CHUNK = 64


def run_ours(a) -> dict:
    import xlstm_metal  # noqa: F401  (first: it picks the CPU BLAS before MLX loads)
    import mlx.core as mx
    import numpy as np

    from common import sized_spec

    from xlstm_metal import xLSTMRunner
    from xlstm_metal.train import TokenBatches, TrainConfig, Trainer

    mx.reset_peak_memory()
    runner = xLSTMRunner.from_spec(sized_spec(a.spec, a.dims), dtype=a.dtype, seed=0)
    vocab = runner.graph.node(runner.graph.outputs[0])["out_type"].dim
    tokens = np.random.default_rng(0).integers(0, vocab, size=max(4 * a.batch * (a.seq_len + 1), 10_000))
    total = 1 + a.warm + a.steps
    # one step more than run, no evaluation or saving on the way: nothing is written
    cfg = TrainConfig(steps=total + 1, batch_size=a.batch, seq_len=a.seq_len, warmup=1, eval_every=10**9,
                      save_every=10**9, log_every=10**9, compile=None if a.compile == "auto" else a.compile == "on",
                      checkpoint_blocks=a.checkpoint_blocks)
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(runner, TokenBatches(tokens.astype(np.int32), a.batch, a.seq_len), cfg, out, progress=False)
        t0 = time.time()
        trainer.train(resume=False, stop_after=1)
        first = time.time()
        trainer.train(resume=False, stop_after=1 + a.warm)
        mx.synchronize()
        t1 = time.perf_counter()
        log = trainer.train(resume=False, stop_after=total)
        mx.synchronize()
        wall = time.perf_counter() - t1
    return {"side": "ours", "device": str(mx.default_device()), "mlx": mx.__version__, "dtype": a.dtype,
            "params_B": runner.num_parameters() / 1e9, "first_step_at": first, "first_step_s": first - t0,
            "train_tok_s": a.steps * a.batch * a.seq_len / wall, "peak_GB": mx.get_peak_memory() / 1e9,
            "loss_first": log.losses[0], "loss_last": log.losses[-1]}


def run_official(a) -> dict:
    import resource

    here = Path(__file__).resolve().parent  # (its profile.py would shadow the standard library's for torch)
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]

    import numpy as np
    import torch
    import torch.nn.functional as F
    from xlstm.xlstm_large.model import xLSTMLarge, xLSTMLargeConfig

    cuda = torch.cuda.is_available()
    dev = "cuda" if cuda else "cpu"
    torch.manual_seed(0)
    d, blocks, heads, vocab = (int(v) for v in a.official_dims.split(","))
    cfg = xLSTMLargeConfig(embedding_dim=d, num_heads=heads, num_blocks=blocks, vocab_size=vocab, mode="train",
                           chunkwise_kernel="chunkwise--triton_limit_chunk" if cuda else "chunkwise--native_autograd",
                           chunk_size=CHUNK, return_last_states=True,  # (its mLSTM layer unpacks (h, state))
                           **({} if cuda else {"sequence_kernel": "native_sequence__native", "step_kernel": "native"}))
    model = xLSTMLarge(cfg).to(dev).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    tokens = np.random.default_rng(0).integers(0, vocab, size=(a.batch, a.seq_len + 1))
    x = torch.tensor(tokens[:, :-1], device=dev)
    y = torch.tensor(tokens[:, 1:], device=dev)
    bf16 = cuda and a.dtype == "bfloat16"

    def step() -> float:
        with torch.autocast(device_type=dev, dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)[0]
        loss = F.cross_entropy(logits.float().reshape(-1, vocab), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss

    sync = torch.cuda.synchronize if cuda else (lambda: None)
    t0 = time.time()
    loss_first = float(step())
    first = time.time()
    for _ in range(a.warm):
        step()
    sync()
    t1 = time.perf_counter()
    for _ in range(a.steps):
        loss = step()
    sync()
    wall = time.perf_counter() - t1
    peak = (torch.cuda.max_memory_allocated() if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"side": "official", "device": torch.cuda.get_device_name() if cuda else "cpu", "torch": torch.__version__,
            "kernel": cfg.chunkwise_kernel, "autocast_bf16": bf16, "params_B": sum(p.numel() for p in
                                                                                   model.parameters()) / 1e9,
            "first_step_at": first, "first_step_s": first - t0, "train_tok_s": a.steps * a.batch * a.seq_len / wall,
            "peak_GB": peak / 1e9, "peak_is": "cuda allocator" if cuda else "process max RSS",
            "loss_first": loss_first, "loss_last": float(loss)}


def side_args(a, shape: str) -> list[str]:
    d, blocks, heads, vocab, batch, seq, dtype = SHAPES[shape]
    dims = f"embedding_dim={d},num_blocks={blocks},num_heads={heads},vocab_size={vocab},chunk_size={CHUNK}"
    return ["--spec", "xlstm_7b", "--dims", dims, "--official-dims", f"{d},{blocks},{heads},{vocab}",
            "--batch", str(batch), "--seq-len", str(seq), "--dtype", dtype, "--steps", str(a.steps),
            "--warm", str(a.warm)]


def measure(a, shape: str, side: str) -> dict:
    """One side at one shape in a fresh process; the time from its start to its first finished step."""
    cmd = [sys.executable, __file__, "--side", side.split("_")[0], *side_args(a, shape)]
    if side.startswith("ours"):
        cmd += ["--compile", "off" if side == "ours_eager" else a.compile]
        cmd += ["--checkpoint-blocks"] * (a.checkpoint_blocks or side == "ours_ckpt")
    spawned = time.time()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=a.timeout, env=os.environ.copy())
    except subprocess.TimeoutExpired:
        return {"side": side, "error": f"timed out after {a.timeout} s"}
    if done.returncode:
        return {"side": side, "error": done.stderr.strip().splitlines()[-1:] or f"exit {done.returncode}"}
    res = json.loads(done.stdout)
    res["start_to_first_step_s"] = res.pop("first_step_at") - spawned
    return res


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", default="mad,162m", help=f"comma-separated, of {', '.join(SHAPES)}")
    p.add_argument("--sides", default="ours,official", help="of ours, ours_eager (our step not compiled), ours_ckpt (ours, blocks checkpointed), official")
    p.add_argument("--side", choices=["ours", "official"], help="measure one side in this process (the driver's "
                                                                "child); with --spec/--dims/--batch/...")
    p.add_argument("--spec", default="xlstm_tiny")
    p.add_argument("--dims", default="", help="comma-separated name=value replacing the spec's dims")
    p.add_argument("--official-dims", default="", help="embedding_dim,num_blocks,num_heads,vocab of the official")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--steps", type=int, default=10, help="timed steps")
    p.add_argument("--warm", type=int, default=2, help="untimed steps after the first")
    p.add_argument("--compile", choices=["auto", "on", "off"], default="auto", help="our step under mx.compile "
                                                                                  "(auto: on the GPU)")
    p.add_argument("--checkpoint-blocks", action="store_true", help="ours with per-block activation checkpointing")
    p.add_argument("--timeout", type=int, default=420, help="seconds for one side at one shape")
    p.add_argument("--out")
    a = p.parse_args(argv)
    if a.side:
        res = run_ours(a) if a.side == "ours" else run_official(a)
        print(json.dumps(res))
        return res
    from common import emit

    out = json.loads(Path(a.out).read_text()) if a.out and Path(a.out).exists() else {"shapes": {}}
    for shape in a.shapes.split(","):
        d, blocks, heads, vocab, batch, seq, dtype = SHAPES[shape]
        row = out["shapes"].get(shape, {})  # (sides measured by an earlier run stay)
        row |= {"embedding_dim": d, "num_blocks": blocks, "num_heads": heads, "vocab": vocab, "batch": batch,
               "seq_len": seq, "dtype": dtype, "steps": a.steps, "checkpoint_blocks": a.checkpoint_blocks}
        for side in a.sides.split(","):
            row[side] = measure(a, shape, side)
        out["shapes"][shape] = row
        if a.out:  # what is measured so far survives a later shape's time limit
            Path(a.out).write_text(json.dumps(out, indent=2) + "\n")
    emit(out, a.out)
    return out


if __name__ == "__main__":
    main()
