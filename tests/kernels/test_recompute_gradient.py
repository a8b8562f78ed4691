"""The mLSTM cell's recomputing gradient (the forward keeps only the cell's inputs, the backward recomputes the
chunkwise forward): the same values and gradients as autodiff of the native kernel, and training plans use it."""
import mlx.core as mx
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from budget import examples
from xlstm_metal import xLSTMRunner
from xlstm_metal.kernels.mlstm.native import mlstm_chunkwise_native
from xlstm_metal.kernels.mlstm.recompute import recomputing
from xlstm_metal.plan import make_plan

ARGS = (0, 1, 2, 3, 4, 5)


def cell_inputs(rng, B, NH, S, DK, DV):
    a = lambda *shape, shift=0.0: mx.array(rng.normal(size=shape).astype(np.float32) + shift)  # noqa: E731
    return (a(B, NH, S, DK), a(B, NH, S, DK), a(B, NH, S, DV), a(B, NH, S) * 3, a(B, NH, S, shift=2.0),
            (a(B, NH, DK, DV), a(B, NH, DK), a(B, NH)))


def loss_of(fn, chunk, mask, with_state, weights):
    def loss(q, k, v, i, f, state):
        h, (C, n, m) = fn(q, k, v, i, f, state if with_state else None, chunk_size=chunk, mask=mask)
        return (h * weights).sum() + (C ** 2).sum() + n.sum() + m.sum()
    return loss


@settings(max_examples=examples(25, 400))
@given(seed=st.integers(0, 10_000), S=st.integers(1, 70), chunk=st.integers(1, 33), B=st.integers(1, 2),
       NH=st.integers(1, 2), masked=st.booleans(), with_state=st.booleans())
def test_recomputed_gradient_equals_autodiff_of_the_native_kernel(seed, S, chunk, B, NH, masked, with_state):
    rng = np.random.default_rng(seed)
    *x, state = cell_inputs(rng, B, NH, S, 8, 12)
    mask = mx.array(rng.random((B, S)) > 0.25) if masked else None
    weights = mx.array(rng.normal(size=(B, NH, S, 12)).astype(np.float32))
    want = mx.value_and_grad(loss_of(mlstm_chunkwise_native, chunk, mask, with_state, weights), ARGS)(*x, state)
    got = mx.value_and_grad(loss_of(recomputing(mlstm_chunkwise_native), chunk, mask, with_state, weights),
                            ARGS)(*x, state)
    (lw, gw), (lg, gg) = want, got
    flat = lambda g: [np.array(a) for a in g[:5]] + [np.array(a) for a in g[5]]  # noqa: E731
    for w, g in zip([np.array(lw)] + flat(gw), [np.array(lg)] + flat(gg)):
        assert np.all(np.isfinite(g))
        assert np.abs(g - w).max() <= 1e-5 * max(1.0, np.abs(w).max())


def test_training_plans_recompute_the_chunkwise_cell_and_inference_plans_do_not():
    runner = xLSTMRunner.from_spec("xlstm_tiny", seed=0)
    cells = lambda plan: [s.kernel for s in plan.steps if s.kernel is not None and s.kernel.family == "mlstm"]  # noqa
    trained = cells(make_plan(runner.graph, 64, training=True))
    served = cells(make_plan(runner.graph, 64))
    assert trained and all(getattr(k.fn, "recomputes", False) for k in trained)
    assert served and not any(getattr(k.fn, "recomputes", False) for k in served)
    assert [k.name for k in trained] == [k.name for k in served]  # the same kernel, its gradient recomputed
