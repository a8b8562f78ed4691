"""The CUDA tensor-core chunkwise kernel's algorithm (kernels/mlstm/mma_chunkwise.py), run on the CPU: the
kernel text that becomes the CUDA kernel, compiled as C++/OpenMP with the warp-level ``mma`` emulated from
its fragment layout (``cpu_emulator.MMA_HEADER``), against the native kernel.

3xTF32 must match float32 to the first-use bound 1e-4 (3e-5 seen: outputs whose normaliser |q·n| is small
amplify float32 rounding, so two float32 summation orders differ there by more than 2e-5); TF32 rounds operands to 11 significant bits
and must stay within its first-use bound. On the GPU the same text checks itself on first use and runs
the property suite."""
from __future__ import annotations

import re

import mlx.core as mx
import numpy as np
import pytest

from cpu_emulator import IDIOMS, MMA_HEADER, CpuKernel, compiler_available
from xlstm_metal.kernels.mlstm import fused_chunkwise, mma_chunkwise
from xlstm_metal.kernels.mlstm.first_use import native_on_cpu as native
from xlstm_metal.kernels.mlstm.first_use import relative_error
from xlstm_metal.kernels.mlstm.native import mlstm_chunkwise_native

pytestmark = pytest.mark.skipif(not compiler_available(), reason="needs a C++ compiler with OpenMP (g++)")


def emulated(precise=True, body_edit=lambda body: body):
    kernel = CpuKernel("mma_chunkwise", mma_chunkwise.INPUTS, mma_chunkwise.OUTPUTS,
                       fused_chunkwise.source(body_edit(mma_chunkwise.BODY), IDIOMS), header=MMA_HEADER)
    return mma_chunkwise._make_chunkwise(lambda: kernel, precise=precise)


def inputs(seed, B, NH, S, DK, DV, with_state, masked):
    rng = np.random.default_rng(seed)
    arr = lambda *s, scale=1.0: mx.array((rng.normal(size=s) * scale).astype(np.float32))  # noqa: E731
    q, k, v = arr(B, NH, S, DK), arr(B, NH, S, DK), arr(B, NH, S, DV)
    i, f = arr(B, NH, S, scale=3.0), arr(B, NH, S, scale=2.0) + 2.0
    state = (arr(B, NH, DK, DV), arr(B, NH, DK), arr(B, NH)) if with_state else None
    mask = mx.array(rng.random((B, S)) > 0.3) if masked else None
    return (q, k, v, i, f), state, mask


def assert_close(got, want, rtol):
    for a, b in zip([got[0], *got[1]], [want[0], *want[1]]):
        assert a.shape == b.shape and a.dtype == b.dtype
        assert float(mx.abs(a - b).max()) <= rtol * max(1.0, float(mx.abs(b).max()))


def test_the_algorithm_passes_its_own_first_use_check_in_both_precisions():
    for key in ("cpu-emulated-3xtf32", "cpu-emulated-tf32"):
        mma_chunkwise._verified.pop(key, None)
    make = lambda: CpuKernel("mma_chunkwise", mma_chunkwise.INPUTS, mma_chunkwise.OUTPUTS,  # noqa: E731
                             fused_chunkwise.source(mma_chunkwise.BODY, IDIOMS), header=MMA_HEADER)
    assert mma_chunkwise.self_check("cpu-emulated", make, precise=True)
    assert mma_chunkwise.self_check("cpu-emulated", make, precise=False)
    assert set(mma_chunkwise._verified) >= {"cpu-emulated-3xtf32", "cpu-emulated-tf32"}


@pytest.mark.parametrize("chunk, S", [(1, 9), (5, 1), (5, 66), (16, 131), (64, 65), (100, 131)])
def test_3xtf32_computes_the_native_kernel_to_float32_accuracy(chunk, S):
    """DK 44 (not a multiple of the 8-wide k-step) and DV 40 (a full and a partial 32-wide value tile), any
    chunk size (above 64 it works in 64-token chunks), padded last chunks, an incoming state and a mask."""
    kernel = emulated(precise=True)
    for with_state, masked in ((False, False), (True, True)):
        x, state, mask = inputs(S * 7 + chunk, 2, 1, S, 44, 40, with_state, masked)
        assert_close(kernel(*x, state, chunk_size=chunk, mask=mask),
                     native(mlstm_chunkwise_native, *x, state, chunk_size=chunk, mask=mask), rtol=1e-4)


def test_tf32_stays_within_its_bound_and_really_rounds():
    x, state, mask = inputs(4, 1, 2, 70, 32, 32, True, True)
    want = native(mlstm_chunkwise_native, *x, state, chunk_size=16, mask=mask)
    err = relative_error(emulated(precise=False)(*x, state, chunk_size=16, mask=mask), want)
    assert 1e-6 < err <= mma_chunkwise.TOLERANCE[False]


def test_long_inputs_run_in_launches_that_carry_the_state(monkeypatch):
    monkeypatch.setattr(mma_chunkwise, "SEGMENT_CHUNKS", 2)  # 150 tokens in 16-token chunks: 5 launches
    x, state, mask = inputs(3, 1, 2, 150, 16, 8, True, True)
    assert_close(emulated()(*x, state, chunk_size=16, mask=mask),
                 native(mlstm_chunkwise_native, *x, state, chunk_size=16, mask=mask), rtol=1e-4)


def test_the_first_use_check_refuses_a_kernel_that_forgets_to_decay_the_state():
    broken = lambda body: body.replace("acc[mi][nt][e] = dec * Cs", "acc[mi][nt][e] = Cs")  # noqa: E731
    assert broken(mma_chunkwise.BODY) != mma_chunkwise.BODY
    make = lambda: CpuKernel("mma_chunkwise_broken", mma_chunkwise.INPUTS, mma_chunkwise.OUTPUTS,  # noqa: E731
                             fused_chunkwise.source(broken(mma_chunkwise.BODY), IDIOMS), header=MMA_HEADER)
    mma_chunkwise._verified.pop("cpu-broken-3xtf32", None)
    with pytest.warns(RuntimeWarning, match="disabled: results differ"):
        assert not mma_chunkwise.self_check("cpu-broken", make, precise=True)


def test_more_key_dims_than_the_shared_state_slice_holds_run_the_native_kernel():
    x, state, _ = inputs(5, 1, 1, 10, mma_chunkwise.MAX_DK + 1, 4, True, False)
    never = lambda: pytest.fail("the kernel must not launch")  # noqa: E731
    got = mma_chunkwise._make_chunkwise(never, precise=True)(*x, state, chunk_size=4)
    assert_close(got, mlstm_chunkwise_native(*x, state, chunk_size=4), rtol=0.0)


@pytest.mark.parametrize("itemsize", [2, 4])
def test_the_shared_arrays_fit_cudas_static_shared_memory(itemsize):
    """Static shared memory is capped at 48 KB per block: the state slice (float) plus the staged q (input dtype)."""
    body = mma_chunkwise.BODY
    consts = dict(re.findall(r"constexpr int (\w+) = ([^;]+);", body))
    decls = re.findall(r"SHARED (float|T) \w+\[([^\]]+)\]", body)

    def value(expr):  # the kernel's constant expressions, sizeof(T) = itemsize
        for _ in range(4):
            expr = re.sub(r"\b(" + "|".join(consts) + r")\b", lambda m: f"({consts[m.group(1)]})", expr)
        return eval(expr.replace("sizeof(T)", str(itemsize)).replace("/", "//"))  # noqa: S307 - our own literals

    total = sum(value(n) * (4 if t == "float" else itemsize) for t, n in decls)
    assert len(decls) == 2 and 0 < total <= 48 * 1024


def test_key_dims_wider_than_one_staged_piece_of_q():
    """float32 q is staged 64 columns at a time: DK 100 (padded to 104) takes a full and a partial piece."""
    x, state, mask = inputs(8, 1, 1, 40, 100, 16, True, True)
    assert_close(emulated()(*x, state, chunk_size=16, mask=mask),
                 native(mlstm_chunkwise_native, *x, state, chunk_size=16, mask=mask), rtol=1e-4)
