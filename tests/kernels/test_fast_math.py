"""The CPU's polynomial exponential: as accurate as MLX's own (2 float32 ulps), exact at the edges the kernels
rely on (0 for -inf, inf for overflow, NaN kept), the gradient of exp, and faster than ``mx.exp`` under ``fused``."""
from __future__ import annotations

import time

import mlx.core as mx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xlstm_metal.kernels import fast_math as fm

cpu = pytest.mark.skipif(mx.default_device().type != mx.DeviceType.cpu, reason="the polynomial runs on the CPU")


@cpu
@settings(deadline=None, max_examples=30)
@given(st.integers(0, 2**31), st.floats(0.1, 30.0), st.floats(-40.0, 40.0))
def test_exp_is_within_two_ulps_of_exact(seed, scale, shift):
    values = (np.random.default_rng(seed).standard_normal(fm.SMALL + 7) * scale + shift).astype(np.float32)
    values = np.clip(values, -87.0, 88.0)
    x = mx.array(values)
    exact = np.exp(values.astype(np.float64))
    got = np.array(fm.exp(x), np.float64)
    assert np.all(np.abs(got - exact) <= 2.5e-7 * exact + 1e-37)


@cpu
def test_exp_edges_zero_inf_and_nan():
    x = mx.array([-mx.inf, -200.0, -88.5, 89.0, 1000.0, mx.inf, mx.nan] + [0.0] * fm.SMALL)
    got = np.array(fm.exp(x))[:7]
    assert got[0] == 0.0 and got[1] == 0.0 and 0 <= got[2] < 1e-37
    assert np.isinf(got[3:6]).all() and np.isnan(got[6])
    sig = np.array(fm.sigmoid(x))[:6]
    assert sig[:2].tolist() == [0.0, 0.0] and 0 <= sig[2] < 1e-37 and sig[3:].tolist() == [1.0, 1.0, 1.0]


def test_small_arrays_and_other_dtypes_follow_mlx():
    x = mx.array([-3.0, 0.0, 2.5])
    assert mx.array_equal(fm.exp(x), mx.exp(x)) and mx.array_equal(fm.sigmoid(x), mx.sigmoid(x))
    big = mx.random.normal((2, fm.SMALL)).astype(mx.bfloat16)
    assert fm.exp(big).dtype == mx.bfloat16 and fm.sigmoid(big).dtype == mx.bfloat16
    assert mx.allclose(fm.sigmoid(big).astype(mx.float32), mx.sigmoid(big).astype(mx.float32), atol=1e-2)


def test_the_gradient_is_the_exponential():
    x = mx.random.normal((3, fm.SMALL))
    grad = mx.grad(lambda a: mx.sum(fm.exp(a) * 2.0))(x)
    assert mx.allclose(grad, 2.0 * mx.exp(x), rtol=1e-6)
    gate = mx.grad(lambda a: mx.sum(fm.sigmoid(a)))(x)
    assert mx.allclose(gate, mx.sigmoid(x) * (1 - mx.sigmoid(x)), rtol=1e-5, atol=1e-7)


def test_fused_traces_once_per_device_and_matches_the_plain_function():
    seen = []

    def gate(g, z):
        seen.append(fm.on_cpu())
        return g * fm.sigmoid(g) * z

    f = fm.fused(gate)
    g, z = mx.random.normal((4, fm.SMALL)), mx.random.normal((4, fm.SMALL))
    assert mx.allclose(f(g, z), g * mx.sigmoid(g) * z, rtol=1e-5, atol=1e-6)
    f(g, z)
    assert len(seen) == 1  # traced once


@pytest.mark.slow  # a timing: run alone in the slow tier
@cpu
def test_the_fused_cpu_gate_beats_mlx_sigmoid():
    g, z = mx.random.normal((512, 2816)), mx.random.normal((512, 2816))
    mx.eval(g, z)
    fast = fm.fused(lambda a, b: a * fm.sigmoid(a) * b)

    def best(fn):
        fn()
        times = []
        for _ in range(5):
            t = time.perf_counter()
            mx.eval(fn())
            times.append(time.perf_counter() - t)
        return min(times)

    assert best(lambda: fast(g, z)) < 0.6 * best(lambda: g * mx.sigmoid(g) * z)
