"""Kernel properties over random shapes, gates (incl. the soft-cap extremes), states and masks.

Default profile `ci` keeps this to seconds; `XLSTM_HYPOTHESIS_PROFILE=thorough` runs thousands of cases.
Failures print an MLSTMCase (shapes + seed) that reproduces them; hypothesis' database replays them.
"""
import mlx.core as mx
import numpy as np
from hypothesis import given, note
from hypothesis import strategies as st

from xlstm_metal.kernels import current_device, kernels
from xlstm_metal.kernels.mlstm.reference import mlstm_reference
from xlstm_metal.testing import kernel_bounds
from xlstm_metal.testing.kernel_bounds import worst
from xlstm_metal.testing.strategies import chunk_sizes, mlstm_inputs

F32_RTOL = kernel_bounds.F32_RTOL[current_device()]  # see xlstm_metal/testing/kernel_bounds.py
BF16_RTOL = 1e-2  # bf16 inputs vs the reference on the same bf16-rounded values: output rounding (2^-8) + f32 math

KERNELS = [k for k in kernels("mlstm") if k.form != "step" and k.supports(device=current_device(), dtype="float32") is None]
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
    tol, st_tol = float32_floor(case.arrays(), h_ref, st_ref)
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
    tol, st_tol = float32_floor((q, k, v, i, f, state, None), h_ref, st_ref)
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


@given(case=mlstm_inputs(max_len=120, dtypes=("bfloat16",), masks=False), chunk=chunk_sizes(64))
def test_bfloat16_inputs_stay_close_to_the_recurrence(case, chunk):
    rounded = lambda a: np.array(mx.array(np.asarray(a, np.float32)).astype(mx.bfloat16).astype(mx.float32), np.float64)  # noqa: E731
    q, k, v, i, f, state, mask = case.arrays()
    arrays = (*[rounded(a) for a in (q, k, v, i, f)], state, None)  # the reference sees what the kernel sees
    h_ref, st_ref = mlstm_reference(*arrays[:5], arrays[5])
    tol = max(BF16_RTOL, float32_floor((*arrays[:5], None, None), h_ref, st_ref)[0])
    for kernel in KERNELS:
        h, st_ = run(kernel, arrays, chunk, dtype=mx.bfloat16)
        assert np.all(np.isfinite(h))
        assert worst(h, h_ref) <= tol
