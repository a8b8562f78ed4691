"""A fused kernel has no VJP of its own: differentiating through it gives its reference's gradient (the native
ops it is verified against), never an error from deep inside MLX and never a silently wrong gradient.

The fused kernels run here through the CPU emulation of their very source (``cpu_emulator.py``); on the GPU
machine the runner tests differentiate models planned with the real CUDA kernels."""
from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten

from cpu_emulator import compiler_available
from test_fused_step_algorithm import emulated_step
from test_tc_kernel_algorithm import emulated
from xlstm_metal.kernels import KernelInfo, kernels, register_kernel
from xlstm_metal.kernels.mlstm.native import mlstm_chunkwise_native, mlstm_step_native_capping_gates
from xlstm_metal.kernels.reference_gradient import with_reference_gradient
from xlstm_metal.modes import in_inference_mode, inference_mode

needs_compiler = pytest.mark.skipif(not compiler_available(), reason="needs a C++ compiler with OpenMP (g++)")


def arrays(seed, B, NH, S, DK, DV):
    rng = np.random.default_rng(seed)
    arr = lambda *s, scale=1.0: mx.array((rng.normal(size=s) * scale).astype(np.float32))  # noqa: E731
    q, k, v = arr(B, NH, S, DK), arr(B, NH, S, DK), arr(B, NH, S, DV)
    i, f = arr(B, NH, S, scale=3.0), arr(B, NH, S, scale=2.0) + 2.0
    state = (arr(B, NH, DK, DV), arr(B, NH, DK), arr(B, NH))
    return [q, k, v, i, f], state


def loss_and_grads(fn, xs, state, weights, **kw):
    """A loss that reads every output (h and the whole state), its value and its gradient w.r.t. all inputs."""
    def loss(xs, state):
        h, (C, n, m) = fn(*xs, state, **kw)
        return sum(mx.sum(a * w) for a, w in zip((h, C, n, m), weights))
    return mx.value_and_grad(loss, argnums=(0, 1))(xs, state)


def assert_trees_close(a, b, tol=2e-5):
    a, b = tree_flatten(a), tree_flatten(b)
    assert len(a) == len(b)
    for (_, x), (_, y) in zip(a, b):
        assert x.shape == y.shape
        assert float(mx.abs(x - y).max()) <= tol * max(1.0, float(mx.abs(y).max()))


def output_weights(seed, h_shape, state):
    rng = np.random.default_rng(seed)
    return [mx.array(rng.normal(size=s).astype(np.float32)) for s in (h_shape, *(a.shape for a in state))]


@needs_compiler
def test_the_fused_step_kernels_gradient_is_the_native_steps_with_bias_cap_and_mask():
    xs, state = arrays(0, 2, 3, 1, 16, 40)
    rng = np.random.default_rng(1)
    bias = (mx.array(rng.normal(size=3).astype(np.float32)), mx.array(rng.normal(size=3).astype(np.float32)))
    kw = dict(eps=1e-6, mask=mx.array([[True], [False]]), gate_soft_cap=15.0, gate_bias=bias)
    fused = with_reference_gradient(emulated_step(), mlstm_step_native_capping_gates)
    weights = output_weights(2, xs[2].shape, state)
    (lf, (gxf, gsf)) = loss_and_grads(fused, xs, state, weights, **kw)
    (lr, (gxr, gsr)) = loss_and_grads(mlstm_step_native_capping_gates, xs, state, weights, **kw)
    assert abs(lf.item() - lr.item()) <= 1e-4 * max(1.0, abs(lr.item()))
    assert_trees_close((gxf, gsf), (gxr, gsr))
    assert float(mx.abs(gxf[0]).max()) > 0  # q's gradient: something flowed


@needs_compiler
@pytest.mark.parametrize("S, chunk", [(1, 64), (37, 8), (70, 64)])
def test_the_fused_chunkwise_kernels_gradient_is_the_native_kernels(S, chunk):
    xs, state = arrays(S, 2, 2, S, 16, 24)
    mask = mx.array(np.random.default_rng(S).random((2, S)) > 0.3)
    fused = with_reference_gradient(emulated(), mlstm_chunkwise_native)  # the tensor-core kernel, emulated
    weights = output_weights(3, xs[2].shape, state)
    kw = dict(chunk_size=chunk, mask=mask)
    (_, gf), (_, gr) = (loss_and_grads(fn, xs, state, weights, **kw) for fn in (fused, mlstm_chunkwise_native))
    assert_trees_close(gf, gr)


def test_values_come_from_the_fused_function_and_gradients_from_the_reference():
    """A "fused" function that MLX cannot differentiate (its result is cut off from its inputs) still gets the
    reference's gradient; its values are its own, even where they differ from the reference's."""
    fused = lambda x, y, *, scale: (mx.stop_gradient(x * y * scale) + 1.0, None)  # noqa: E731
    reference = lambda x, y, *, scale: (x * y * scale, None)  # noqa: E731
    f = with_reference_gradient(fused, reference)
    x, y = mx.array([1.0, 2.0]), mx.array([3.0, 5.0])
    out, none = f(x, y, scale=2.0)
    assert none is None and np.allclose(np.array(out), [7.0, 21.0])
    gx, gy = mx.grad(lambda x, y: f(x, y, scale=2.0)[0].sum(), argnums=(0, 1))(x, y)
    assert np.allclose(np.array(gx), [6.0, 10.0]) and np.allclose(np.array(gy), [2.0, 4.0])
    # and under mx.compile, values and gradients alike
    g = mx.compile(mx.grad(lambda x: f(x, y, scale=2.0)[0].sum()))
    assert np.allclose(np.array(g(x)), [6.0, 10.0])


def test_integer_and_mask_inputs_pass_through_and_get_no_gradient():
    def fn(x, idx, mask):
        return mx.where(mask, x[idx], 0.0)
    f = with_reference_gradient(fn, fn)
    x, idx, mask = mx.array([1.0, 2.0, 3.0]), mx.array([2, 0]), mx.array([True, False])
    assert np.allclose(np.array(f(x, idx, mask)), [3.0, 0.0])
    assert np.allclose(np.array(mx.grad(lambda x: f(x, idx, mask).sum())(x)), [0.0, 0.0, 1.0])


def test_every_registered_kernel_without_its_own_gradient_uses_its_reference():
    fused = [k for k in kernels() if not k.differentiable]
    assert {k.backend for k in fused} >= {"cuda", "metal"}
    for k in fused:
        assert k.reference is not None, f"{k.family}/{k.name} has no reference for its gradient"
        assert k.fn.reference is k.reference


def test_registering_a_registered_kernel_again_does_not_wrap_it_twice():
    k = next(k for k in kernels() if not k.differentiable)
    again = register_kernel(k)
    assert again.fn is k.fn


def test_a_kernel_registered_without_gradient_or_reference_names_itself_when_differentiated():
    info = register_kernel(KernelInfo("test_no_grad", "fused", "opaque", lambda x: mx.stop_gradient(x) * 2.0,
                                      differentiable=False))
    assert np.allclose(np.array(info.fn(mx.array([1.0]))), [2.0])
    with pytest.raises(ValueError, match=r"test_no_grad/opaque defines no gradient.*training=True"):
        mx.grad(lambda x: info.fn(x).sum())(mx.array([1.0]))


def test_inference_mode_calls_the_fused_function_bare_and_ends_with_its_block():
    """Generation never differentiates: inside ``inference_mode`` the wrapper steps aside (no per-call cost); a
    gradient taken through a bare fused function is the one MLX gives it (here: none)."""
    fused = lambda x: mx.stop_gradient(x) * 3.0  # noqa: E731
    f = with_reference_gradient(fused, lambda x: x * 3.0)
    x = mx.array([1.0, 2.0])
    with inference_mode():
        assert in_inference_mode()
        assert np.allclose(np.array(mx.grad(lambda x: f(x).sum())(x)), [0.0, 0.0])
    assert not in_inference_mode()
    assert np.allclose(np.array(mx.grad(lambda x: f(x).sum())(x)), [3.0, 3.0])


def test_generation_leaves_inference_mode_off_while_it_waits_for_its_caller():
    from xlstm_metal import xLSTMRunner
    from xlstm_metal.generation.generate import generate_step

    runner = xLSTMRunner.from_spec("xlstm_tiny", dtype="float32", seed=0)
    seen = []
    for _ in generate_step(runner._model_fn(), [[1, 2, 3]], max_tokens=3, seed=0):
        seen.append(in_inference_mode())
    assert seen == [False, False, False]


def test_the_compiled_decode_step_is_traced_once_per_mode_and_both_agree():
    from xlstm_metal import xLSTMRunner

    runner = xLSTMRunner.from_spec("xlstm_tiny", dtype="float32", seed=0)
    _, state = runner(mx.array([[1, 2, 3]]))
    tok = mx.array([[4]])
    plain, _ = runner(tok, state)
    with inference_mode():
        bare, _ = runner(tok, state)
    assert set(runner._decode_fn) == {False, True}
    assert np.array_equal(np.array(plain), np.array(bare))


def test_prefill_that_evaluates_layer_by_layer_runs_the_fused_kernels_bare(monkeypatch):
    """It can never be differentiated (MLX forbids evaluating under a gradient), so it pays nothing for gradients."""
    from xlstm_metal import xLSTMRunner
    from xlstm_metal.blocks.mlstm import MLSTM

    modes = []
    forward = MLSTM.forward
    monkeypatch.setattr(MLSTM, "forward", lambda self, *a: (modes.append(in_inference_mode()), forward(self, *a))[1])
    runner = xLSTMRunner.from_spec("xlstm_tiny", dtype="float32", seed=0)
    runner(mx.array([[1, 2, 3, 4]]))
    assert modes and all(modes) and not in_inference_mode()
