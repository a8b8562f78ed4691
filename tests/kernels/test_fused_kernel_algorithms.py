"""The fused GPU kernels' algorithm, run on the CPU: the very text that becomes the CUDA and Metal
kernels, compiled as C++ with OpenMP (``cpu_emulator.py``), against the native MLX kernels.

On the GPU machine the same kernels also check themselves on first use and run the property suite;
these tests keep the shared algorithm honest on every CI run, including the Metal half, which no
Linux machine can execute."""
from __future__ import annotations

import re
import warnings

import mlx.core as mx
import numpy as np
import pytest

from cpu_emulator import IDIOMS, CpuKernel, compiler_available
from xlstm_metal.kernels.mlstm import fused_chunkwise, fused_step
from xlstm_metal.kernels.mlstm.first_use import native_on_cpu as native
from xlstm_metal.kernels.mlstm.native import mlstm_chunkwise_native, mlstm_step_native

pytestmark = pytest.mark.skipif(not compiler_available(), reason="needs a C++ compiler with OpenMP (g++)")


def emulated_chunkwise(body_edit=lambda which, body: body):
    def make(which):
        body, ins, outs = fused_chunkwise.KERNELS[which]
        return CpuKernel(f"chunkwise_{which}", ins, outs, fused_chunkwise.source(body_edit(which, body), IDIOMS))
    return fused_chunkwise._make_chunkwise("cpu", make)


def emulated_step(row_slices=fused_step.ROW_SLICES):
    kernel = CpuKernel("step", fused_step._INPUTS, fused_step._OUTPUTS, fused_step._source(IDIOMS))
    return fused_step._make_step("cpu", lambda: kernel, row_slices=row_slices)


def inputs(seed, B, NH, S, DK, DV, with_state, masked):
    rng = np.random.default_rng(seed)
    arr = lambda *s, scale=1.0: mx.array((rng.normal(size=s) * scale).astype(np.float32))  # noqa: E731
    q, k, v = arr(B, NH, S, DK), arr(B, NH, S, DK), arr(B, NH, S, DV)
    i, f = arr(B, NH, S, scale=3.0), arr(B, NH, S, scale=2.0) + 2.0
    state = (arr(B, NH, DK, DV), arr(B, NH, DK), arr(B, NH)) if with_state else None
    mask = mx.array(rng.random((B, S)) > 0.3) if masked else None
    return (q, k, v, i, f), state, mask


def assert_close(got, want, rtol=2e-5):
    for a, b in zip([got[0], *got[1]], [want[0], *want[1]]):
        assert a.shape == b.shape and a.dtype == b.dtype
        scale = max(1.0, float(mx.abs(b).max()))
        assert float(mx.abs(a - b).max()) <= rtol * scale


def test_the_fused_chunkwise_algorithm_passes_its_own_first_use_check():
    fused_chunkwise._verified.pop("cpu-emulated", None)
    assert fused_chunkwise.self_check("cpu-emulated", emulated_chunkwise())


@pytest.mark.parametrize("chunk, S", [(1, 1), (1, 9), (5, 1), (5, 65), (5, 131), (64, 1), (64, 65), (64, 131), (100, 131)])
def test_the_fused_chunkwise_algorithm_computes_the_native_kernel(chunk, S):
    """Partial key and value tiles (DK 72, DV 20), any chunk size (above 64 it works in 64-token
    chunks), padded last chunks, an incoming state and a mask."""
    fused = emulated_chunkwise()
    for with_state, masked in ((False, False), (True, True)):
        x, state, mask = inputs(S * 7 + chunk, 2, 2, S, 72, 20, with_state, masked)
        assert_close(fused(*x, state, chunk_size=chunk, mask=mask),
                     native(mlstm_chunkwise_native, *x, state, chunk_size=chunk, mask=mask))


def test_long_inputs_run_in_segments_that_carry_the_state(monkeypatch):
    monkeypatch.setattr(fused_chunkwise, "SEGMENT_CHUNKS", 2)  # 150 tokens in 16-token chunks: 5 segments
    x, state, mask = inputs(3, 1, 2, 150, 16, 8, True, True)
    assert_close(emulated_chunkwise()(*x, state, chunk_size=16, mask=mask),
                 native(mlstm_chunkwise_native, *x, state, chunk_size=16, mask=mask))


def test_the_first_use_check_refuses_a_subtly_wrong_chunkwise_kernel():
    """Drop the decay of the carried state between chunks: a plausible slip the check must catch."""
    def break_decay(which, body):
        return body.replace("c[a][b] *= decay;", "c[a][b] *= 1.0f;") if which == "states" else body

    fused_chunkwise._verified.pop("cpu-broken", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert not fused_chunkwise.self_check("cpu-broken", emulated_chunkwise(break_decay))
    assert any("disabled" in str(w.message) and "relative error" in str(w.message) for w in caught)


@pytest.mark.parametrize("masked", [False, True])
def test_the_fused_step_algorithm_computes_the_native_step(masked):
    step = emulated_step()
    for seed, DV in ((0, 20), (1, 300)):  # 300 columns: ten threadgroups per head, the last one partial
        x, state, mask = inputs(seed, 2, 3, 1, 8, DV, True, masked)
        assert_close(step(*x, state, mask=mask), native(mlstm_step_native, *x, state, mask=mask))


@pytest.mark.parametrize("row_slices", [1, 4, 16])
def test_any_number_of_threads_per_column_computes_the_same_step(row_slices):
    """bench_step.py times other threadgroup shapes; each must compute the native step (40 rows: passes of
    8 * row_slices rows, the last one partial)."""
    step = emulated_step(row_slices)
    x, state, mask = inputs(5, 1, 2, 1, 40, 70, True, True)
    assert_close(step(*x, state, mask=mask), native(mlstm_step_native, *x, state, mask=mask))


def test_a_new_batch_size_reuses_the_compiled_step_kernel():
    """The batch size is no template argument (a new one would compile a new kernel, seconds on a GPU)."""
    kernel = CpuKernel("step", fused_step._INPUTS, fused_step._OUTPUTS, fused_step._source(IDIOMS))
    templates = []

    def recording(**kw):
        templates.append(kw["template"])
        return kernel(**kw)

    step = fused_step._make_step("cpu", lambda: recording)
    for B in (1, 3):
        x, state, _ = inputs(6, B, 2, 1, 8, 20, True, False)
        assert_close(step(*x, state), native(mlstm_step_native, *x, state))
    assert templates[0] == templates[1]


def test_a_threadgroup_shape_beyond_the_hardware_is_refused():
    with pytest.raises(ValueError, match="row_slices must be 1..32"):
        fused_step._make_step("cpu", row_slices=64)


def test_the_fused_step_caps_raw_gates_itself_like_the_layer_does():
    """With ``gate_soft_cap`` the kernel takes raw pre-activations (beyond the cap too) and applies cap * tanh(x / cap)."""
    step = emulated_step()
    x, state, _ = inputs(3, 2, 3, 1, 8, 20, True, False)
    q, k, v, i, f = x
    i, f = i * 10, f * 10  # well past the cap of 15
    cap = lambda a: 15.0 * mx.tanh(a / 15.0)  # noqa: E731
    assert_close(step(q, k, v, i, f, state, gate_soft_cap=15.0), native(mlstm_step_native, q, k, v, cap(i), cap(f), state))


def test_the_fused_step_adds_each_heads_gate_bias_before_the_cap():
    """``gate_bias``: one input and one forget gate bias per head (what a merged projection leaves unadded)."""
    step = emulated_step()
    x, state, _ = inputs(4, 2, 3, 1, 8, 20, True, False)
    q, k, v, i, f = x
    b_i, b_f = mx.array([-10.0, 0.5, 3.0]), mx.array([3.0, 4.5, 6.0])
    cap = lambda a: 15.0 * mx.tanh(a / 15.0)  # noqa: E731
    want = native(mlstm_step_native, q, k, v, cap(i + b_i[:, None]), cap(f + b_f[:, None]), state)
    assert_close(step(q, k, v, i, f, state, gate_soft_cap=15.0, gate_bias=(b_i, b_f)), want)


def test_cuda_and_metal_chunkwise_sources_differ_only_in_idioms():
    for body, _, _ in fused_chunkwise.KERNELS.values():
        cuda, metal = fused_chunkwise.source(body, "cuda"), fused_chunkwise.source(body, "metal")
        words = set(fused_chunkwise.IDIOMS["cuda"])
        assert not any(re.search(rf"\b{w}\b", cuda) or re.search(rf"\b{w}\b", metal) for w in words)
        for backend in ("cuda", "metal"):  # put the idiom words back, longest expansion first
            for w, text in sorted(fused_chunkwise.IDIOMS[backend].items(), key=lambda kv: -len(kv[1])):
                if backend == "cuda":
                    cuda = cuda.replace(text, w)
                else:
                    metal = metal.replace(text, w)
        assert cuda == metal == body  # the two sources are the same text but for the idioms


def test_each_fused_threadgroup_fits_in_metal_threadgroup_memory():
    """Apple GPUs give a threadgroup at most 32 KB; CUDA's static limit is 48 KB."""
    for which, (body, _, _) in fused_chunkwise.KERNELS.items():
        sizes = re.findall(r"SHARED float \w+\[([0-9 *]+)\];", body)
        assert sizes and len(sizes) == body.count("SHARED"), which  # every declaration was read
        used = sum(4 * eval(expr) for expr in sizes)  # noqa: S307 - digits and '*' only (the regex)
        assert used <= 32 * 1024, (which, used)
