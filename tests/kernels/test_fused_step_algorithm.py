"""The fused step kernel's algorithm, run on the CPU: the very text that becomes the CUDA and Metal kernels,
compiled as C++ with OpenMP (``cpu_emulator.py``), against the native step.

On the GPU machine the same kernel also checks itself on first use and runs the property suite; these tests keep
the shared algorithm honest on every CI run, including the Metal half, which no Linux machine can execute."""
from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from cpu_emulator import IDIOMS, CpuKernel, compiler_available
from xlstm_metal.kernels import gpu
from xlstm_metal.kernels.gpu import native_on_cpu as native
from xlstm_metal.kernels.mlstm import fused_step
from xlstm_metal.kernels.mlstm.native import mlstm_step_native

pytestmark = pytest.mark.skipif(not compiler_available(), reason="needs a C++ compiler with OpenMP (g++)")


def emulated_step():
    k = fused_step.KERNEL
    return fused_step._make("cpu", CpuKernel("step", k.inputs, k.outputs, gpu.source(k.body, IDIOMS)))


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


@pytest.mark.parametrize("masked", [False, True])
def test_the_fused_step_algorithm_computes_the_native_step(masked):
    step = emulated_step()
    for seed, DV in ((0, 20), (1, 300)):  # 300 columns: ten threadgroups per head, the last one partial
        x, state, mask = inputs(seed, 2, 3, 1, 8, DV, True, masked)
        assert_close(step(*x, state, mask=mask), native(mlstm_step_native, *x, state, mask=mask))


def test_several_passes_over_the_rows_compute_the_same_step():
    """72 key rows: two passes of 8 * RY rows, the second partial; 70 value columns: three groups, one partial.
    The launch's threadgroup is the text's 32 x RY threads."""
    assert f"constexpr int RY = {fused_step.THREADS // 32};" in fused_step.KERNEL.body
    step = emulated_step()
    x, state, mask = inputs(5, 1, 2, 1, 72, 70, True, True)
    assert_close(step(*x, state, mask=mask), native(mlstm_step_native, *x, state, mask=mask))


def test_a_new_batch_size_reuses_the_compiled_step_kernel():
    """The batch size is no template argument (a new one would compile a new kernel, seconds on a GPU)."""
    k = fused_step.KERNEL
    kernel = CpuKernel("step", k.inputs, k.outputs, gpu.source(k.body, IDIOMS))
    templates = []

    def recording(**kw):
        templates.append(kw["template"])
        return kernel(**kw)

    step = fused_step._make("cpu", recording)
    for B in (1, 3):
        x, state, _ = inputs(6, B, 2, 1, 8, 20, True, False)
        assert_close(step(*x, state), native(mlstm_step_native, *x, state))
    assert templates[0] == templates[1]


def test_the_fused_step_caps_raw_gates_itself_like_the_layer_does():
    """With ``gate_soft_cap`` the kernel takes raw pre-activations (beyond the cap too) and applies
    cap * tanh(x / cap)."""
    step = emulated_step()
    x, state, _ = inputs(3, 2, 3, 1, 8, 20, True, False)
    q, k, v, i, f = x
    i, f = i * 10, f * 10  # well past the cap of 15
    cap = lambda a: 15.0 * mx.tanh(a / 15.0)  # noqa: E731
    assert_close(step(q, k, v, i, f, state, gate_soft_cap=15.0),
                 native(mlstm_step_native, q, k, v, cap(i), cap(f), state))


def test_the_fused_step_adds_each_heads_gate_bias_before_the_cap():
    """``gate_bias``: one input and one forget gate bias per head (what a merged projection leaves unadded)."""
    step = emulated_step()
    x, state, _ = inputs(4, 2, 3, 1, 8, 20, True, False)
    q, k, v, i, f = x
    b_i, b_f = mx.array([-10.0, 0.5, 3.0]), mx.array([3.0, 4.5, 6.0])
    cap = lambda a: 15.0 * mx.tanh(a / 15.0)  # noqa: E731
    want = native(mlstm_step_native, q, k, v, cap(i + b_i[:, None]), cap(f + b_f[:, None]), state)
    assert_close(step(q, k, v, i, f, state, gate_soft_cap=15.0, gate_bias=(b_i, b_f)), want)
