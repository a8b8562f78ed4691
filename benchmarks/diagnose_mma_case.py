"""Replay one property case on the tensor-core chunkwise kernel and locate a disagreement: repeated runs under
each way of preparing the operands (``mma_chunkwise.PREP_MODE``; run-to-run differences mean something reads
memory it never wrote) plus random cases, the MLX preparation compiled vs eager vs on the CPU, and the launch
fed with the CPU's operands (separates the preparation from the kernel). Prints one JSON object.

    python benchmarks/diagnose_mma_case.py --case '{"batch": 1, "heads": 1, "seq_len": 114, ...}' --chunk 256
"""
from __future__ import annotations

import argparse
import json

import mlx.core as mx
import numpy as np
from common import emit

from xlstm_metal.kernels.mlstm import mma_chunkwise as mm
from xlstm_metal.kernels.mlstm.reference import mlstm_reference
from probe_gpu_ops import poison
from sweep_kernel_parity import random_case

from xlstm_metal.testing.kernel_bounds import F32_RTOL, parity_errors, run_kernel, worst
from xlstm_metal.testing.strategies import MLSTMCase


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--case", required=True)
    p.add_argument("--chunk", type=int, required=True)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--poison", action="store_true", help="fill the allocator's cache with NaN before each repeat")
    p.add_argument("--others", type=int, default=12, help="random cases run by each variant too")
    p.add_argument("--modes", default="compiled,eager", help="mma_chunkwise.PREP_MODE values to try")
    a = p.parse_args(argv)
    case = MLSTMCase(**json.loads(a.case))
    arrays = case.arrays()
    h_ref, st_ref = mlstm_reference(*arrays[:5], arrays[5], mask=arrays[6])
    fn = mm._make_chunkwise()
    res = {"case": repr(case), "chunk": a.chunk, "variants": {}}
    rng = np.random.default_rng(1)
    others = [random_case(rng) for _ in range(a.others)]
    for mode in a.modes.split(","):
        mm.PREP_MODE = mode
        row = res["variants"][mode] = {"repeats_h_err": [], "others_failed": []}
        for _ in range(a.repeats):
            if a.poison:
                poison(24)
            h, st = run_kernel(fn, arrays, a.chunk)
            row["repeats_h_err"].append(worst(h, h_ref))
        for other, chunk in others:
            ok, errs, tols = parity_errors(fn, other.arrays(), chunk, F32_RTOL["gpu"])
            if not ok:
                row["others_failed"].append([repr(other), chunk, errs[0]])
    mm.PREP_MODE = "compiled"

    q, k, v, i, f, state, mask = arrays
    x = lambda z: mx.array(np.asarray(z, np.float32))  # noqa: E731
    B, NH, S, DK = q.shape
    L = min(a.chunk, mm.MAX_CHUNK, S)
    NC = -(-S // L)
    pad = NC * L - S
    mk = None if mask is None else mx.array(mask)
    if pad:
        tail = mx.concatenate([mx.ones((B, S), mx.bool_), mx.zeros((B, pad), mx.bool_)], axis=1)
        mk = tail if mk is None else mx.concatenate([mk, mx.zeros((B, pad), mx.bool_)], axis=1)
    zp = lambda z: mx.pad(x(z), [(0, 0), (0, 0), (0, pad)] + [(0, 0)] * (np.ndim(z) - 3))  # noqa: E731
    ins = [zp(z) for z in (q, k, v, i, f)]
    st = tuple(x(z) for z in state) if state is not None else (
        mx.zeros((B, NH, DK, v.shape[-1])), mx.zeros((B, NH, DK)), mx.zeros((B, NH)))
    comp, n_c, m_c = mm._operands_compiled(*ins, st, mk, L, 1e-6, mm.TILE_DV)
    eager, n_e, m_e = mm._operands(*ins, st, mk, L, 1e-6, mm.TILE_DV)
    with mx.stream(mx.cpu):
        cpu, n_p, m_p = mm._operands(*ins, st, mk, L, 1e-6, mm.TILE_DV)
        mx.eval(cpu)
    res["operands_compiled_vs_cpu"] = {n: float(mx.abs(comp[n] - cpu[n]).max()) for n in mm._NAMES}
    res["operands_eager_vs_cpu"] = {n: float(mx.abs(eager[n] - cpu[n]).max()) for n in mm._NAMES}
    res["operands_scale"] = {n: float(mx.abs(cpu[n]).max()) for n in mm._NAMES}
    res["operand_shapes"] = {n: list(cpu[n].shape) for n in mm._NAMES}
    BH, NCp, Lp, DKp = cpu["q"].shape
    DVp = cpu["vT"].shape[2]
    outs = []
    for ops in (cpu, comp):
        h_k, _ = mm._cuda_kernel()(
            inputs=[mx.array(np.array(ops[n])) for n in mm._NAMES] + [mx.array([NCp, DKp, DVp, Lp], mx.int32)],
            template=[("T", mx.float32), ("PRECISE", 1)], grid=(mm.THREADS * (DVp // mm.TILE_DV), BH, 1),
            threadgroup=(mm.THREADS, 1, 1), output_shapes=[(BH, NCp, Lp, DVp), (BH, DKp, DVp)],
            output_dtypes=[mx.float32, mx.float32])
        h_k = np.array(h_k[:, :, :L, :v.shape[-1]].reshape(B, NH, NC * L, -1)[:, :, :S], np.float64)
        outs.append(worst(h_k, h_ref))
    res["kernel_on_cpu_operands_h_err"], res["kernel_on_compiled_operands_h_err"] = outs
    emit(res)


if __name__ == "__main__":
    main()
