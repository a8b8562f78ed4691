"""Kernel properties over random shapes, gates (incl. the soft-cap extremes), states and masks.

Default profile `ci` keeps this to seconds; `XLSTM_HYPOTHESIS_PROFILE=thorough` runs thousands of cases.
Failures print an MLSTMCase (shapes + seed) that reproduces them; hypothesis' database replays them.
"""
import dataclasses

import mlx.core as mx
import numpy as np
from hypothesis import given, note
from hypothesis import strategies as st

from xlstm_metal.kernels import current_device, kernels
from xlstm_metal.kernels.gpu import relative_error as worst
from xlstm_metal.kernels.mlstm.reference import mlstm_reference
from xlstm_metal.testing import kernel_bounds
from xlstm_metal.testing.strategies import chunk_sizes, mlstm_inputs

F32_RTOL = kernel_bounds.F32_RTOL[current_device()]  # see xlstm_metal/testing/kernel_bounds.py
KERNELS = [k for k in kernels("mlstm") if k.form != "step" and k.supports(device=current_device(), dtype="float32") is None]
# every kernel that takes bfloat16 inputs here, including those with bfloat16 operands that take nothing else
BF16_KERNELS = [k for k in kernels("mlstm") if k.form != "step" and k.supports(device=current_device(), dtype="bfloat16") is None]
STEP_KERNELS = [k for k in kernels("mlstm", "step") if k.supports(device=current_device(), dtype="float32") is None]


def run(kernel, arrays, chunk, dtype=mx.float32):
    return kernel_bounds.run_kernel(kernel.fn, arrays, chunk, dtype)


def float32_floor(arrays, h_ref, st_ref):
    return kernel_bounds.float32_floor(arrays, h_ref, st_ref, F32_RTOL)


@given(case=mlstm_inputs(max_len=300), chunk=chunk_sizes(), data=st.data())
def test_every_kernel_matches_the_float64_recurrence(case, chunk, data):
    arrays = case.arrays()
    reference = kernel_bounds.expected(arrays, F32_RTOL)
    for kernel in KERNELS:  # finite, and h, C, n, m each within its bound
        ok, errs, tols = kernel_bounds.parity_errors(kernel.fn, arrays, chunk, F32_RTOL, reference)
        note(f"{kernel.name}: errors h, C, n, m {[f'{e:.2e}' for e in errs]} against {[f'{t:.1e}' for t in tols]}")
        assert ok, kernel.name


@given(case=mlstm_inputs(max_len=40, masks=True))
def test_step_by_step_equals_the_recurrence(case):
    q, k, v, i, f, state, mask = case.arrays()
    h_ref, st_ref = mlstm_reference(q, k, v, i, f, state, mask=mask)
    tol, *st_tol = float32_floor(case.arrays(), h_ref, st_ref)
    for kernel in STEP_KERNELS:
        cur, hs = state, []
        for t in range(case.seq_len):
            sl = slice(t, t + 1)
            h, cur = run(kernel, (q[:, :, sl], k[:, :, sl], v[:, :, sl], i[:, :, sl], f[:, :, sl], cur,
                                  None if mask is None else mask[:, sl]), 1)
            hs.append(h)
        assert worst(np.concatenate(hs, axis=2), h_ref) <= tol
        for a, b, t in zip(cur, st_ref, st_tol):
            assert worst(a, b) <= t


@given(case=mlstm_inputs(max_len=200, masks=False), chunk=chunk_sizes(64), data=st.data())
def test_state_passing_split_anywhere(case, chunk, data):
    q, k, v, i, f, state, _ = case.arrays()
    cut = data.draw(st.integers(0, case.seq_len), label="cut")
    kernel = KERNELS[0]
    h_full, st_full = run(kernel, (q, k, v, i, f, state, None), chunk)
    parts, cur = [], state
    for a, b in ((0, cut), (cut, case.seq_len)):
        if a == b:
            continue
        h, cur = run(kernel, (q[:, :, a:b], k[:, :, a:b], v[:, :, a:b], i[:, :, a:b], f[:, :, a:b], cur, None), chunk)
        parts.append(h)
    h_ref, st_ref = mlstm_reference(q, k, v, i, f, state)
    tol, *st_tol = float32_floor((q, k, v, i, f, state, None), h_ref, st_ref)
    # both runs are float32 approximations of the reference: their distance is at most the sum of errors
    assert worst(np.concatenate(parts, axis=2), h_full) <= 2 * tol
    for a, b, t in zip(cur, st_full, st_tol):
        assert worst(a, b) <= 2 * t


@given(case=mlstm_inputs(max_len=64), chunk=chunk_sizes(32))
def test_fully_masked_input_leaves_the_state_exactly_unchanged(case, chunk):
    q, k, v, i, f, state, _ = case.arrays()
    mask = np.zeros((case.batch, case.seq_len), bool)
    for kernel in KERNELS:
        h, st_ = run(kernel, (q, k, v, i, f, state, mask), chunk)
        assert np.all(h == 0)
        expected = state if state is not None else (np.zeros_like(st_[0]), np.zeros_like(st_[1]), np.zeros_like(st_[2]))
        for a, b in zip(st_, expected):
            np.testing.assert_array_equal(a, np.asarray(b, np.float32))


@given(case=mlstm_inputs(max_len=120, dtypes=("bfloat16",)), chunk=chunk_sizes(64))
def test_bfloat16_inputs_stay_close_to_the_recurrence(case, chunk):
    """Against the reference on the same bf16-rounded values: float32-math kernels within max(1e-2, float32 floor);
    kernels with bfloat16 operands (``math_dtype``) within 10x what a bfloat16 ulp of q, k, v, state does
    (kernel_bounds.bfloat16_floor). States and masks included, h and the returned state both checked. Key and value
    dims in whole 16-byte rows, as the bfloat16 tensor-core kernel wants them (odd dims: the float32 tests above)."""
    case = dataclasses.replace(case, dk=-(-case.dk // 8) * 8, dv=-(-case.dv // 8) * 8)
    arrays = kernel_bounds.bfloat16_rounded(case.arrays())
    bounds = {}
    for kernel in BF16_KERNELS:
        if kernel.math_dtype not in bounds:
            bounds[kernel.math_dtype] = kernel_bounds.expected(arrays, F32_RTOL, kernel.math_dtype)
        ok, errs, tols = kernel_bounds.parity_errors(kernel.fn, arrays, chunk, F32_RTOL, bounds[kernel.math_dtype],
                                                     dtype=mx.bfloat16)
        note(f"{kernel.name}: errors h, C, n, m {[f'{e:.2e}' for e in errs]} against {[f'{t:.1e}' for t in tols]}")
        assert ok, kernel.name


@given(case=mlstm_inputs(max_len=100), chunk=chunk_sizes(64))
def test_bfloat16_fully_masked_input_leaves_the_state_exactly_unchanged(case, chunk):
    case = dataclasses.replace(case, dk=-(-case.dk // 8) * 8, dv=-(-case.dv // 8) * 8)
    q, k, v, i, f, state, _ = kernel_bounds.bfloat16_rounded(case.arrays())
    mask = np.zeros((case.batch, case.seq_len), bool)
    for kernel in BF16_KERNELS:
        h, st_ = run(kernel, (q, k, v, i, f, state, mask), chunk, dtype=mx.bfloat16)
        assert np.all(h == 0), kernel.name
        expected = state if state is not None else tuple(np.zeros_like(a) for a in st_)
        for a, b in zip(st_, expected):
            np.testing.assert_array_equal(a, np.asarray(b, np.float32))
