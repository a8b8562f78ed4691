"""7B-shape decode and prefill with each fused norm kernel on and off, in one process (same GPU, same call): what
each fusion (kernels/add_rms_norm.py, head_norm_gate.py) is worth. A kernel is switched off the way its failed
first-use check would switch it off, so the plan takes the native ops. Prints one JSON object.

    python benchmarks/ablate_fusions.py --spec xlstm_7b --tokens 40 --prefill 1024
"""
from __future__ import annotations

import argparse
import time

import mlx.core as mx
from common import emit
from profile_decode import time_decode

from xlstm_metal import xLSTMRunner
from xlstm_metal.kernels import add_rms_norm, head_norm_gate

CONFIGS = {"fused": (True, True), "native_norms": (False, False), "native_add_rms_norm": (False, True),
           "native_head_norm_gate": (True, False), "fused_again": (True, True)}


def measure(spec, dtype, tokens, prefill):
    runner = xLSTMRunner.from_spec(spec, dtype=dtype, seed=0)
    mx.eval(runner.model.parameters())
    decode = 1.0 / time_decode(runner, tokens, warmup=3)
    x = mx.random.randint(0, 1000, (1, prefill))
    mx.eval(runner(x, logits="last")[0])
    t = time.perf_counter()
    for _ in range(3):
        mx.eval(runner(x, logits="last")[0])
    return {"decode_tok_s": decode, f"prefill_tok_s_S{prefill}": 3 * prefill / (time.perf_counter() - t),
            "plan_kernels": sorted({s.describe_kernels() for s in runner.plan(1).steps if s.type in ("add", "mlstm")})}


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--spec", default="xlstm_tiny")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--tokens", type=int, default=40)
    p.add_argument("--prefill", type=int, default=1024)
    p.add_argument("--out")
    a = p.parse_args(argv)
    res = {"device": str(mx.default_device())}
    for name, switches in CONFIGS.items():
        saved = {module: dict(module._verified) for module in (add_rms_norm, head_norm_gate)}
        for module, on in zip(saved, switches):
            if not on:
                module._verified.update(cuda=False, metal=False)
        res[name] = measure(a.spec, a.dtype, a.tokens, a.prefill)
        for module, verdicts in saved.items():  # back to what the first-use checks found
            module._verified.clear()
            module._verified.update(verdicts)
        print(name, res[name], flush=True)
    emit(res, a.out)


if __name__ == "__main__":
    main()
