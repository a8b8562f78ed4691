"""Many random kernel-property cases for a fixed time, without hypothesis' shrinking: every case where a
kernel breaks the property suite's float32 bound is printed, with the numbers needed to replay it.

    python benchmarks/sweep_kernel_parity.py --seconds 120 [--kernels compiled_chunkwise,cuda_mma_chunkwise]

Used when the GPU property run fails (the GPU is rented by the minute, hypothesis' shrinking is slow
there): replay a printed case on the CPU with ``MLSTMCase(**case).arrays()``.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import numpy as np
from common import emit

from xlstm_metal.kernels import current_device, kernels
from xlstm_metal.testing.kernel_bounds import F32_RTOL, expected, parity_errors
from xlstm_metal.testing.strategies import MLSTMCase


def random_case(rng) -> tuple[MLSTMCase, int]:
    case = MLSTMCase(batch=int(rng.integers(1, 3)), heads=int(rng.integers(1, 4)), seq_len=int(rng.integers(1, 301)),
                     dk=int(rng.integers(1, 17)), dv=int(rng.integers(1, 17)), seed=int(rng.integers(0, 2**31 - 1)),
                     gate_style=str(rng.choice(["normal", "extreme", "forgetful"])), with_state=bool(rng.integers(0, 2)),
                     with_mask=bool(rng.integers(0, 2)))
    chunk = int(rng.choice([1, 2, 16, 64, 128, 256])) if rng.random() < 0.5 else int(rng.integers(1, 257))
    return case, chunk


def check(kernel, case, chunk, reference=None):
    ok, errs, tols = parity_errors(kernel.fn, case.arrays(), chunk, F32_RTOL[current_device()], reference)
    return ok, {"kernel": kernel.name, "case": dataclasses.asdict(case), "chunk": chunk,
                "errors_h_C_n_m": errs, "tolerances_h_C_n_m": tols}


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=120)
    p.add_argument("--kernels", help="comma-separated names (default: every non-step kernel that runs here)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-failures", type=int, default=20)
    p.add_argument("--out")
    a = p.parse_args(argv)
    here = [k for k in kernels("mlstm") if k.form != "step" and k.supports(device=current_device(), dtype="float32") is None]
    names = a.kernels.split(",") if a.kernels else [k.name for k in here]
    chosen = [k for k in here if k.name in names]
    rng = np.random.default_rng(a.seed)
    start, cases, failures = time.time(), {k.name: 0 for k in chosen}, []
    while time.time() - start < a.seconds and len(failures) < a.max_failures:
        case, chunk = random_case(rng)
        reference = expected(case.arrays(), F32_RTOL[current_device()])  # once per case, for every kernel
        for kernel in chosen:
            try:
                ok, row = check(kernel, case, chunk, reference)
            except Exception as e:  # noqa: BLE001 - a crash is a finding too
                ok, row = False, {"kernel": kernel.name, "case": dataclasses.asdict(case), "chunk": chunk, "error": repr(e)}
            cases[kernel.name] += 1
            if not ok:
                failures.append(row)
                print(row, file=sys.stderr, flush=True)
    emit({"seconds": round(time.time() - start, 1), "cases": cases, "failures": failures}, a.out)


if __name__ == "__main__":
    main()
