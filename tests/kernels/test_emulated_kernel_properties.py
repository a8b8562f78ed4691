"""The fused GPU kernels' algorithms (their kernel text compiled for the CPU, see cpu_emulator.py) hold the
property suite's float32 bound (xlstm_metal/testing/kernel_bounds.py, GPU value) over random shapes, gates
at the soft cap, incoming states, masks and chunk sizes: on this machine, before any GPU sees them.

Found this way (the GPU property run found it first): the SIMT kernel took the gate weight between two
tokens as a difference of two cumulative sums, 20x over the bound after strongly closed forget gates."""
from __future__ import annotations

from functools import cache

import pytest
from hypothesis import example, given, note, settings

from cpu_emulator import IDIOMS, MMA_HEADER, CpuKernel, compiler_available
from xlstm_metal.kernels.mlstm import fused_chunkwise, mma_chunkwise
from xlstm_metal.testing.kernel_bounds import F32_RTOL, expected, parity_errors
from xlstm_metal.testing.strategies import MLSTMCase, chunk_sizes, mlstm_inputs

pytestmark = pytest.mark.skipif(not compiler_available(), reason="needs a C++ compiler with OpenMP (g++)")


@cache
def emulated_kernels():
    def simt(which):
        body, ins, outs = fused_chunkwise.KERNELS[which]
        return CpuKernel(f"chunkwise_{which}", ins, outs, fused_chunkwise.source(body, IDIOMS))

    mma = CpuKernel("mma_chunkwise", mma_chunkwise.INPUTS, mma_chunkwise.OUTPUTS,
                    fused_chunkwise.source(mma_chunkwise.BODY, IDIOMS), header=MMA_HEADER)
    return {"fused SIMT chunkwise": fused_chunkwise._make_chunkwise("cpu", simt),
            "tensor-core chunkwise, 3xTF32": mma_chunkwise._make_chunkwise(lambda: mma, precise=True)}


# each example runs two emulated GPU kernels (OpenMP threads standing in for a threadgroup): half the
# profile's examples in CI, all of them under XLSTM_HYPOTHESIS_PROFILE=thorough
@settings(max_examples=max(1, settings().max_examples // 2) if settings().max_examples <= 25 else settings().max_examples)
@given(case=mlstm_inputs(max_len=200), chunk=chunk_sizes())
@example(case=MLSTMCase(batch=2, heads=3, seq_len=212, dk=7, dv=15, seed=290117534, gate_style="extreme", with_state=True,
                        with_mask=True), chunk=64)  # the GPU run's counterexample: 9.6e-4 against a bound of 5.0e-4
def test_emulated_fused_kernels_match_the_float64_recurrence(case, chunk):
    arrays = case.arrays()
    reference = expected(arrays, F32_RTOL["gpu"])
    for name, fn in emulated_kernels().items():
        ok, errs, tols = parity_errors(fn, arrays, chunk, F32_RTOL["gpu"], reference)
        note(f"{name}: errors h, C, n, m {[f'{e:.1e}' for e in errs]} against {[f'{t:.1e}' for t in tols]}")
        assert ok, name
