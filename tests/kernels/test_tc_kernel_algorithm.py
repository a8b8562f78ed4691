"""The bf16 tensor-core chunkwise kernel (kernels/mlstm/tc_chunkwise.py), run on the CPU: its four kernel texts
compiled as C++/OpenMP with the warp-level helpers emulated (``cpu_emulator.BF16_MMA_HEADER``: mma m16n8k16 from
its fragment layout, quad shuffles, bfloat16 rounding), against the native kernel and the float64 recurrence.

With the bfloat16 rounding of operands switched off, the algorithm computes the native kernel to float32
accuracy: what separates the two is rounding alone, which the first-use bound and the bfloat16 property bound
then limit. On the GPU the same texts check themselves on first use and run the property suite."""
from __future__ import annotations

import dataclasses
from functools import cache

import mlx.core as mx
import numpy as np
import pytest
from hypothesis import given, note, settings

from budget import examples
from cpu_emulator import BF16_MMA_HEADER, IDIOMS, CpuKernel, compiler_available
from xlstm_metal.kernels import get_kernel, gpu
from xlstm_metal.kernels.gpu import native_on_cpu, relative_error
from xlstm_metal.kernels.mlstm import tc_chunkwise
from xlstm_metal.kernels.mlstm.native import mlstm_chunkwise_native
from xlstm_metal.testing.kernel_bounds import bfloat16_rounded, expected, parity_errors
from xlstm_metal.testing.strategies import chunk_sizes, mlstm_inputs

pytestmark = pytest.mark.skipif(not compiler_available(), reason="needs a C++ compiler with OpenMP (g++)")

HEADER = BF16_MMA_HEADER + tc_chunkwise.COMMON  # the emulated helpers, then the ones shared with CUDA
EXACT = HEADER.replace("static inline float bf16_round(float x) {",
                       "static inline float bf16_round(float x) { return x;")


@cache
def emulated(header=HEADER):
    """The kernel with its launches run on the CPU (float32 arrays holding bfloat16 values)."""
    return tc_chunkwise._make("cpu", launches(header), io_dtype=mx.float32, entry_dtype=mx.float32)


def launches(header=HEADER):
    """The four kernel texts compiled for the CPU, by launch name."""
    return {w: CpuKernel(k.name, k.inputs, k.outputs, gpu.source(k.body, IDIOMS), header=header)
            for w, k in tc_chunkwise.KERNELS.items()}


def inputs(seed, B, NH, S, DK, DV, with_state, masked):
    """bfloat16 values (as float32 arrays), forget gates mostly open so the state carries across chunks."""
    rng = np.random.default_rng(seed)
    def bf(*s, scale=1.0, shift=0.0):
        return mx.array((rng.normal(size=s) * scale + shift).astype(np.float32)).astype(mx.bfloat16).astype(mx.float32)
    x = (bf(B, NH, S, DK), bf(B, NH, S, DK), bf(B, NH, S, DV), bf(B, NH, S, scale=3.0),
         bf(B, NH, S, scale=2.0, shift=2.0))
    state = (bf(B, NH, DK, DV), bf(B, NH, DK), bf(B, NH)) if with_state else None
    mask = mx.array(rng.random((B, S)) > 0.3) if masked else None
    return x, state, mask


def test_the_algorithm_passes_its_own_first_use_check():
    gpu.set_verdict(tc_chunkwise.FUSED.name, "cpu-emulated", None)
    fn = tc_chunkwise._make("cpu", launches(), io_dtype=mx.float32, entry_dtype=mx.float32)
    assert tc_chunkwise.FUSED.check("cpu-emulated", fn, dtype=mx.float32)
    gpu.set_verdict(tc_chunkwise.FUSED.name, "cpu-emulated", None)


@pytest.mark.parametrize("B, NH, S, DK, DV",
                         [(1, 1, 1, 16, 8), (2, 1, 63, 48, 40), (1, 2, 65, 72, 64), (1, 1, 130, 32, 136)])
def test_without_bfloat16_rounding_it_is_the_native_kernel(B, NH, S, DK, DV):
    """Partial key pieces (DK 48, 72), the normaliser column inside a value tile (DV 40, 136) or in a tile of its
    own (DV 64), one token, a padded last chunk, several chunks; an incoming state and a mask."""
    for with_state, masked in ((False, False), (True, True)):
        x, state, mask = inputs(S + DK + DV, B, NH, S, DK, DV, with_state, masked)
        got = emulated(EXACT)(*x, state, chunk_size=64, mask=mask)
        want = native_on_cpu(mlstm_chunkwise_native, *x, state, chunk_size=64, mask=mask)
        assert relative_error(got, want) <= 1e-4


def test_with_bfloat16_operands_it_stays_within_its_first_use_bound_and_really_rounds():
    x, state, mask = inputs(5, 1, 2, 150, 64, 72, True, True)
    want = native_on_cpu(mlstm_chunkwise_native, *x, state, chunk_size=64, mask=mask)
    err = relative_error(emulated()(*x, state, chunk_size=64, mask=mask), want)
    assert 1e-5 < err <= tc_chunkwise.FUSED.tolerance


def test_a_fully_masked_input_leaves_the_state_exactly_unchanged_and_outputs_zeros():
    x, state, _ = inputs(2, 2, 1, 70, 16, 16, True, False)
    h, (C, n, m) = emulated()(*x, state, chunk_size=64, mask=mx.zeros((2, 70), mx.bool_))
    assert float(mx.abs(h).max()) == 0.0
    for a, b in zip((C, n, m), state):
        assert mx.array_equal(a, b)


def test_segments_that_carry_the_state_compute_the_whole_input():
    """The plan cuts inputs longer than MAX_CHUNKS chunks into segments: 150 tokens as 64 + 64 + 22, the state
    handed from call to call, a mask across the borders."""
    x, state, mask = inputs(3, 1, 1, 150, 16, 16, True, True)
    whole = emulated()(*x, state, chunk_size=64, mask=mask)
    hs, st = [], state
    for a, b in ((0, 64), (64, 128), (128, 150)):
        h, st = emulated()(*(t[:, :, a:b] for t in x), st, chunk_size=64, mask=mask[:, a:b])
        hs.append(h)
    parts = (mx.concatenate(hs, axis=2), st)
    want = native_on_cpu(mlstm_chunkwise_native, *x, state, chunk_size=64, mask=mask)
    assert relative_error(parts, want) <= tc_chunkwise.FUSED.tolerance
    assert relative_error(parts, whole) <= tc_chunkwise.FUSED.tolerance


def test_inputs_it_does_not_cover_are_refused_by_the_registry_and_the_kernel():
    """float32 values given as bfloat16 would lose bits, and key/value rows must be whole 16-byte pieces: the
    registry says so (the plan then takes the compiled kernel), and a direct call says so too."""
    info = dataclasses.replace(get_kernel("mlstm", "cuda_tc_chunkwise"), is_available=lambda: True)  # as on CUDA
    assert "not multiples of 8" in info.supports(device="gpu", dtype="bfloat16", head_dims=(12, 8))
    assert "dtypes" in info.supports(device="gpu", dtype="float32", head_dims=(16, 8))
    fn = tc_chunkwise._make("cpu", {})  # no launch expected
    x, state, mask = inputs(4, 1, 1, 20, 12, 8, True, True)
    for args in (x, tuple(a.astype(mx.bfloat16) if a.ndim == 4 else a for a in x)):  # float32; DK 12
        with pytest.raises(ValueError, match="multiples of 8"):
            fn(*args, state, chunk_size=16, mask=mask)


def test_an_empty_input_returns_no_output_and_the_same_state():
    x, state, _ = inputs(6, 1, 2, 0, 16, 8, True, False)
    h, st = emulated()(*x, state, chunk_size=64)
    assert h.shape == (1, 2, 0, 8)
    assert all(mx.array_equal(a, b) for a, b in zip(st, state))


@settings(max_examples=examples(12, 2000))  # each example runs an emulated GPU kernel
@given(case=mlstm_inputs(max_len=160), chunk=chunk_sizes())
def test_emulated_kernel_holds_the_bfloat16_bound_of_the_property_suite(case, chunk):
    """The bound the GPU property suite applies to kernels with bfloat16 operands (kernel_bounds.bfloat16_floor),
    over random shapes (key and value dims rounded up to whole 16-byte rows), gates at the soft cap, states, masks."""
    case = dataclasses.replace(case, dk=-(-case.dk // 8) * 8, dv=-(-case.dv // 8) * 8)
    arrays = bfloat16_rounded(case.arrays())
    reference = expected(arrays, 1e-4, "bfloat16")
    ok, errs, tols = parity_errors(emulated(), arrays, chunk, 1e-4, reference)
    note(f"errors h, C, n, m {[f'{e:.1e}' for e in errs]} against {[f'{t:.1e}' for t in tols]}")
    assert ok


def swz(row, word):  # kernels/mlstm/tc_chunkwise_source.py COMMON's swz, in Python
    return row * 36 + (word ^ (((row >> 3) & 7) << 2))


def test_transposed_tiles_are_read_and_written_without_shared_memory_bank_conflicts():
    """The staging stores (lane = 8 columns o of token pair p: rows 8 o + e, 4 pairs per warp) and the mma fragment
    reads (8 consecutive rows x 4 pairs) each touch 32 different banks of 4-byte words, for every warp and step."""
    for warp in range(4):
        for r in range(2):
            for e in range(8):
                lanes = [(u % 8, u // 8) for u in (32 * warp + lane + 128 * r for lane in range(32))]
                assert len({swz(8 * o + e, p) % 32 for o, p in lanes}) == 32
    for base in range(0, 72, 8):
        for word0 in range(0, 32, 4):
            assert len({swz(base + gid, word0 + tig) % 32 for gid in range(8) for tig in range(4)}) == 32


def test_keys_and_values_are_laid_out_per_head_once_for_all_launches():
    """A head-major view of the projections is a copy; k and v feed two launches each and must be copied once."""
    seen = {}

    def make(which):
        def launch(*, inputs, output_shapes, output_dtypes, **_):
            seen[which] = inputs
            return [mx.zeros(s, d) for s, d in zip(output_shapes, output_dtypes)]
        return launch

    fn = tc_chunkwise._make("cpu", {w: make(w) for w in tc_chunkwise.KERNELS}, io_dtype=mx.float32,
                            entry_dtype=mx.float32)
    (q, k, v, i, f), _, _ = inputs(0, 1, 2, 70, 16, 24, False, False)
    heads = lambda t: t.transpose(0, 2, 1, 3).reshape(1, 70, 2, -1).transpose(0, 2, 1, 3)  # noqa: E731  a strided view
    fn(heads(q), heads(k), heads(v), i, f, None, chunk_size=64)
    assert seen["local"][0] is seen["outputs"][1] and seen["local"][1] is seen["outputs"][2]
