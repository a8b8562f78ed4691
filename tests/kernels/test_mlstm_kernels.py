"""Every mLSTM kernel form computes the float64 reference recurrence at chunk borders, with masks, states,
extreme gates, long sequences and gradients (random shapes and lengths: tests/properties)."""
import math

import mlx.core as mx
import numpy as np
import pytest

from xlstm_metal.kernels import kernels, select_kernel
from xlstm_metal.kernels.mlstm.native import mlstm_chunkwise_native, mlstm_sequence_native, mlstm_step_native
from xlstm_metal.kernels.mlstm.reference import mlstm_reference

RTOL = 1e-5  # float32 kernels vs float64 reference: max |error| <= RTOL * max |reference| (+ small atol)


def make_inputs(seed, B=2, NH=2, S=20, DK=5, DV=7, gate_scale=3.0, with_state=False):
    rng = np.random.default_rng(seed)
    q, k = rng.normal(size=(B, NH, S, DK)), rng.normal(size=(B, NH, S, DK))
    v = rng.normal(size=(B, NH, S, DV))
    i = np.clip(rng.normal(size=(B, NH, S)) * gate_scale, -15, 15)
    f = np.clip(rng.normal(size=(B, NH, S)) * gate_scale + 2, -15, 15)
    state = None
    if with_state:
        state = (rng.normal(size=(B, NH, DK, DV)), rng.normal(size=(B, NH, DK)) , rng.normal(size=(B, NH)))
    as32 = lambda a: None if a is None else np.asarray(a, np.float32).astype(np.float64)  # noqa: E731
    # the reference sees exactly the float32 values the kernels see
    return as32(q), as32(k), as32(v), as32(i), as32(f), None if state is None else tuple(as32(a) for a in state)


def to_mx(arrays, dtype=mx.float32):
    return [mx.array(np.asarray(a, np.float32)).astype(dtype) for a in arrays]


def run(fn, inputs, *, chunk_size=16, mask=None, dtype=mx.float32):
    q, k, v, i, f, state = inputs
    st_mx = None if state is None else tuple(to_mx(state))
    h, (C, n, m) = fn(*to_mx((q, k, v), dtype), *to_mx((i, f)), st_mx, chunk_size=chunk_size,
                      mask=None if mask is None else mx.array(mask))
    return np.array(h.astype(mx.float32)), (np.array(C), np.array(n), np.array(m))


def step_by_step(inputs, mask=None):
    q, k, v, i, f, state = inputs
    st_mx = None if state is None else tuple(to_mx(state))
    hs = []
    for t in range(q.shape[2]):
        sl = slice(t, t + 1)
        h, st_mx = mlstm_step_native(*to_mx((q[:, :, sl], k[:, :, sl], v[:, :, sl], i[:, :, sl], f[:, :, sl])), st_mx,
                                     mask=None if mask is None else mx.array(mask[:, sl]))
        hs.append(np.array(h))
    return np.concatenate(hs, axis=2), tuple(np.array(a) for a in st_mx)


def assert_close(actual, expected, rtol=RTOL, what="h"):
    scale = max(1.0, float(np.abs(expected).max()))
    err = float(np.abs(actual - expected).max())
    assert err <= rtol * scale, f"{what}: max error {err:.3g} (scale {scale:.3g})"
    assert np.all(np.isfinite(actual)), f"{what} has NaN/inf"


FORMS = {"chunkwise": mlstm_chunkwise_native, "sequence": mlstm_sequence_native}


@pytest.mark.parametrize("L", [1, 3, 16, 64])
@pytest.mark.parametrize("S_of_L", ["1", "L-1", "L", "L+1", "3*L+2"])
@pytest.mark.parametrize("with_state", [False, True])
def test_chunkwise_matches_reference_at_chunk_borders(L, S_of_L, with_state):
    S = max(1, eval(S_of_L, {"L": L}))
    inputs = make_inputs(L * 100 + S, S=S, with_state=with_state)
    h_ref, st_ref = mlstm_reference(*inputs[:5], inputs[5])
    h, st_ = run(mlstm_chunkwise_native, inputs, chunk_size=L)
    assert_close(h, h_ref)
    for a, b in zip(st_, st_ref):
        assert_close(a, b, what="state")


@pytest.mark.parametrize("form", list(FORMS))
def test_extreme_gates_stay_finite_and_exact(form):
    rng = np.random.default_rng(3)
    inputs = list(make_inputs(5, S=40))
    inputs[3] = rng.choice([-15.0, 15.0, 14.75, -14.75, 0.0], size=inputs[3].shape)  # input gate at the soft cap
    inputs[4] = rng.choice([-15.0, 15.0, -14.75, 10.0], size=inputs[4].shape)  # forget gate nearly closed / open
    h_ref, _ = mlstm_reference(*inputs[:5], None)
    h, _ = run(FORMS[form], inputs, chunk_size=7)
    assert_close(h, h_ref)


def test_splitting_a_sequence_and_carrying_the_state_equals_one_pass():
    inputs = make_inputs(11, S=50, with_state=True)
    q, k, v, i, f, state = inputs
    h_full, st_full = run(mlstm_chunkwise_native, inputs, chunk_size=8)
    for cut in (1, 13, 16, 49):
        h1, st1 = run(mlstm_chunkwise_native, (q[:, :, :cut], k[:, :, :cut], v[:, :, :cut], i[:, :, :cut], f[:, :, :cut], state), chunk_size=8)
        h2, st2 = run(mlstm_chunkwise_native, (q[:, :, cut:], k[:, :, cut:], v[:, :, cut:], i[:, :, cut:], f[:, :, cut:], st1), chunk_size=8)
        assert_close(np.concatenate([h1, h2], axis=2), h_full)
        for a, b in zip(st2, st_full):
            assert_close(a, b, what="state")


@pytest.mark.parametrize("form", list(FORMS))
def test_masked_positions_leave_state_unchanged_and_output_zero(form):
    inputs = make_inputs(7, B=2, S=12, with_state=True)
    mask = np.ones((2, 12), bool)
    mask[0, :5] = False  # left padding
    mask[1, 4:7] = False  # a hole in the middle
    h, st_ = run(FORMS[form], inputs, chunk_size=4, mask=mask)
    h_ref, st_ref = mlstm_reference(*inputs[:5], inputs[5], mask=mask)
    assert_close(h, h_ref)
    assert np.all(h[0, :, :5] == 0)
    for a, b in zip(st_, st_ref):
        assert_close(a, b, what="state")
    # all positions masked: the state comes back exactly as it went in
    _, st_same = run(FORMS[form], inputs, chunk_size=4, mask=np.zeros((2, 12), bool))
    for a, b in zip(st_same, inputs[5]):
        np.testing.assert_allclose(a, np.asarray(b, np.float32), rtol=0, atol=0)


def test_left_padded_row_equals_the_unpadded_row():
    q, k, v, i, f, _ = make_inputs(9, B=1, S=10)
    pad = 6
    padded = [np.concatenate([np.zeros_like(a[:, :, :pad]) + 123.0, a], axis=2) for a in (q, k, v, i, f)]
    mask = np.array([[False] * pad + [True] * 10])
    h_p, st_p = run(mlstm_chunkwise_native, (*padded, None), chunk_size=4, mask=mask)
    h_u, st_u = run(mlstm_chunkwise_native, (q, k, v, i, f, None), chunk_size=4)
    assert_close(h_p[:, :, pad:], h_u)
    for a, b in zip(st_p, st_u):
        assert_close(a, b, what="state")


def test_bfloat16_inputs_track_the_reference_loosely():
    inputs = make_inputs(21, S=33)
    h_ref, _ = mlstm_reference(*inputs[:5], None)
    h, _ = run(mlstm_chunkwise_native, inputs, chunk_size=8, dtype=mx.bfloat16)
    # bf16 q/k/v carry ~3 significant digits; the math itself runs in float32.
    err = np.abs(h - h_ref).max() / max(1.0, np.abs(h_ref).max())
    assert err < 3e-2


def test_long_sequence_is_stable():
    S = 65536
    inputs = make_inputs(1, B=1, NH=1, S=S, DK=4, DV=4)
    h, (C, n, m) = run(mlstm_chunkwise_native, inputs, chunk_size=256)
    assert np.all(np.isfinite(h)) and np.all(np.isfinite(C)) and np.all(np.isfinite(m))
    tail = slice(S - 300, S)
    q, k, v, i, f, _ = inputs
    # the last 300 outputs also follow from the sequence form started from the state 300 tokens earlier
    _, st_mid = run(mlstm_chunkwise_native, (q[:, :, :S - 300], k[:, :, :S - 300], v[:, :, :S - 300], i[:, :, :S - 300], f[:, :, :S - 300], None), chunk_size=256)
    h_tail, _ = run(mlstm_sequence_native, (q[:, :, tail], k[:, :, tail], v[:, :, tail], i[:, :, tail], f[:, :, tail], st_mid))
    # 65k float32 accumulation steps and h = num / |q·n| amplify rounding where |q·n| is small: 1e-3 here.
    assert_close(h[:, :, tail], h_tail, rtol=1e-3)


def test_gradients_of_chunkwise_equal_gradients_of_sequence():
    q, k, v, i, f, _ = make_inputs(4, B=1, S=11)
    args = to_mx((q, k, v, i, f))

    def loss(fn, *a):
        h, (C, n, m) = fn(*a, None, chunk_size=4)
        return mx.sum(h * h) + mx.sum(C)

    g_chunk = mx.grad(lambda *a: loss(mlstm_chunkwise_native, *a), argnums=(0, 1, 2, 3, 4))(*args)
    g_seq = mx.grad(lambda *a: loss(mlstm_sequence_native, *a), argnums=(0, 1, 2, 3, 4))(*args)
    for a, b in zip(g_chunk, g_seq):
        a, b = np.array(a), np.array(b)
        assert np.all(np.isfinite(a))
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(b).max()))


def test_step_kernel_refuses_more_than_one_token():
    inputs = make_inputs(0, S=2)
    with pytest.raises(ValueError, match="exactly one token"):
        run(mlstm_step_native, inputs)


def test_registry_offers_each_form_natively():
    names = {k.form: k.name for k in kernels("mlstm")}
    assert names == {"chunkwise": "native_chunkwise", "sequence": "native_sequence", "step": "native_step"}
    assert select_kernel("mlstm", "chunkwise", device="cpu", dtype="float32").fn is mlstm_chunkwise_native
    with pytest.raises(LookupError, match="no mlstm chunkwise kernel applies"):
        select_kernel("mlstm", "chunkwise", device="cpu", dtype="int8")


def test_fused_step_kernels_share_one_algorithm_and_refuse_themselves_when_wrong():
    import warnings

    from xlstm_metal.kernels.mlstm import fused_step

    cuda, metal = fused_step._source(fused_step._CUDA), fused_step._source(fused_step._METAL)
    strip = lambda src, idioms: [l for l in src.splitlines() if not any(v in l for v in idioms.values())]  # noqa: E731
    assert strip(cuda, fused_step._CUDA) == strip(metal, fused_step._METAL)  # only the thread indexing differs
    # the first-use check accepts a correct kernel and refuses (with a warning) a wrong one
    fused_step._verified.pop("test-good", None)
    fused_step._verified.pop("test-bad", None)
    assert fused_step.self_check("test-good", mlstm_step_native)

    def wrong(q, k, v, i, f, state=None, **kw):
        h, st = mlstm_step_native(q, k, v, i, f, state, **kw)
        return h * 1.01, st

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert not fused_step.self_check("test-bad", wrong)
    assert any("disabled" in str(w.message) for w in caught)


def test_fused_kernels_are_registered_but_not_selected_without_their_gpu():
    import mlx.core as mx

    names = [k.name for k in kernels("mlstm", "step")]
    assert names[:2] == ["cuda_step", "metal_step"]  # preferred where they run
    if not mx.cuda.is_available() and not mx.metal.is_available():
        assert select_kernel("mlstm", "step", device="cpu", dtype="float32").name == "native_step"
