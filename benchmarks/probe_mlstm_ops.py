"""The mLSTM chunkwise kernel and its pieces on the GPU (allocator cache poisoned with NaN) vs the CPU.

    python benchmarks/probe_mlstm_ops.py

Companion of ``probe_gpu_ops.py``: once a model node is found that goes non-finite only on recycled
buffers, this names the operation inside the kernel that does it.
"""
from __future__ import annotations

import argparse

import mlx.core as mx
import numpy as np
from common import emit
from probe_gpu_ops import compare, poison, to_np

from xlstm_metal.kernels.mlstm import native


MAX_LOG2 = 30


def gpu_vs_cpu(fn, *args):
    poison(MAX_LOG2)
    out = fn(*args)
    mx.eval(out)
    with mx.stream(mx.cpu):
        ref = fn(*args)
        mx.eval(ref)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    refs = ref if isinstance(ref, (tuple, list)) else (ref,)
    flat = []
    for o, r in zip(outs, refs):
        if isinstance(o, (tuple, list)):
            flat += [compare(to_np(a), to_np(b)) for a, b in zip(o, r)]
        else:
            flat.append(compare(to_np(o), to_np(r)))
    return flat


def main(argv=None):
    global MAX_LOG2
    p = argparse.ArgumentParser()
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--dk", type=int, default=256)
    p.add_argument("--dv", type=int, default=512)
    p.add_argument("--seqs", default="1,8,63,64,65,128,1024")
    p.add_argument("--max-log2", type=int, default=30, help="poison buffers up to 2**this bytes")
    a = p.parse_args(argv)
    MAX_LOG2 = a.max_log2
    rng = np.random.default_rng(0)
    B, NH, DK, DV = 1, a.heads, a.dk, a.dv
    res = {"device": str(mx.default_device()), "kernel": {}, "ops": {}}
    for S in map(int, a.seqs.split(",")):
        q = mx.array(rng.normal(size=(B, NH, S, DK)), mx.bfloat16)
        k = mx.array(rng.normal(size=(B, NH, S, DK)), mx.bfloat16)
        v = mx.array(rng.normal(size=(B, NH, S, DV)), mx.bfloat16)
        i = mx.array(rng.normal(size=(B, NH, S)) - 3, mx.float32)
        f = mx.array(rng.normal(size=(B, NH, S)) + 4, mx.float32)
        res["kernel"][S] = gpu_vs_cpu(lambda *a: native.mlstm_chunkwise_native(*a, chunk_size=64), q, k, v, i, f)
    for G in (1, 2, 16):
        A = mx.array(rng.random((B, NH, G + 1, G)), mx.float32)
        Cl = mx.array(rng.normal(size=(B, NH, G, DK * DV)), mx.float32)
        res["ops"][f"matmul_K{G}"] = gpu_vs_cpu(lambda a, c: a @ c, A, Cl)
        nl = mx.array(rng.normal(size=(B, NH, G, DK)), mx.float32)
        res["ops"][f"matmul_n_K{G}"] = gpu_vs_cpu(lambda a, c: a @ c, A, nl)
        g = mx.array(-rng.random((B, NH, G)), mx.float32)
        res["ops"][f"segment_sums_T{G}"] = gpu_vs_cpu(native._segment_sums, g)
        L = 4  # one group of G chunks of L tokens, from a non-zero incoming state
        C = mx.array(rng.normal(size=(B, NH, DK, DV)), mx.float32)
        n = mx.array(rng.normal(size=(B, NH, DK)), mx.float32)
        m = mx.array(rng.normal(size=(B, NH)), mx.float32)
        qg = mx.array(rng.normal(size=(B, NH, G, L, DK)), mx.float32)
        kg = mx.array(rng.normal(size=(B, NH, G, L, DK)), mx.float32)
        vg = mx.array(rng.normal(size=(B, NH, G, L, DV)), mx.float32)
        ig = mx.array(rng.normal(size=(B, NH, G, L)), mx.float32)
        lf = mx.array(-rng.random((B, NH, G, L)), mx.float32)
        res["ops"][f"chunk_group_G{G}"] = gpu_vs_cpu(
            lambda *t: native._chunk_group(*t[:4], mx.cumsum(t[4], axis=-1), native._segment_sums(t[4]), t[5:], 1e-6, False),
            qg, kg, vg, ig, lf, C, n, m)
    x = mx.array(rng.normal(size=(B, NH, 1, 64)), mx.float32)  # one chunk of 64 gates
    res["ops"]["segment_sums_L64"] = gpu_vs_cpu(native._segment_sums, x)
    res["ops"]["cumsum_axis-2"] = gpu_vs_cpu(lambda a: mx.cumsum(mx.broadcast_to(a[..., :, None], a.shape + (64,)), axis=-2), x)
    bad = sorted(name for part in ("kernel", "ops") for name, rows in res[part].items()
                 if any(not r["gpu_finite"] or r.get("max_abs_diff", 0) > 1e-2 * max(1, r.get("max_abs", 1)) for r in rows))
    res["bad"] = [str(b) for b in bad]
    emit(res)


if __name__ == "__main__":
    main()
