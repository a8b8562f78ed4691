"""Specification of the mLSTM kernels: every form (chunkwise, sequence, step) computes the float64 reference
recurrence of ``kernels/mlstm/reference.py`` — at chunk borders, for any length and chunk size, with initial
states, masks, extreme gates, bfloat16 inputs, 65k-token sequences and through autograd.

Tolerances (errors are measured relative to the magnitude of the expected output, see ``rel_err``):
  * float32 kernel vs float64 reference:   max|h - h_ref| <= 1e-5 * max(1, max|h_ref|)   (same for C, n, m),
    except where float32 itself cannot get that close on the given inputs: h = q·C / |q·n| amplifies the
    rounding of a float32 state where |q·n| is small. There the bound is 4x the "float32 floor" of the
    inputs: the larger of the error of the same recurrence looped in float32 (numpy) and the change that
    moving the inputs by ~2 float32 ulps causes in exact arithmetic (``Expected``).
  * float32 form vs float32 form:          the sum of their two bounds
  * bfloat16 q/k/v/i/f (float32 math inside, h rounded to bf16): 1e-2 against the reference on the same
    bf16-rounded inputs (bf16 output rounding is 2^-8 ~ 4e-3); 1e-1 end to end against the unrounded
    float32 inputs from the zero state (a sanity bound: 4.6e-2 measured, dominated by how much these
    inputs amplify their own bf16 rounding, not by the kernel)
  * gradients, chunkwise vs sequence (float32): 2e-5 relative to the largest gradient entry (2.6e-6 measured)
  * S = 65536: 1e-4 for the tail vs a sequence-form rerun (2.9e-6 measured), 5e-4 between chunk sizes 1 (in the
    plan's segments) and 256 (6e-5 measured: 65k float32 accumulations in different orders)
Broader random coverage with an ill-conditioning-aware tolerance lives in tests/properties.
"""
import mlx.core as mx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from budget import examples

import xlstm_metal.kernels as kernels_pkg
from xlstm_metal.kernels import current_device, get_kernel, gpu, kernels, select_kernel
from xlstm_metal.kernels.mlstm.native import (MAX_CHUNKS, mlstm_chunkwise_native, mlstm_sequence_native,
                                              mlstm_step_native)
from xlstm_metal.kernels.mlstm.reference import mlstm_reference
from xlstm_metal.plan import segment_bounds

# On a GPU, MLX evaluates exp/log with fast approximations: there the float32 bound is 1e-4 (as in tests/properties).
F32_RTOL = 1e-5 if current_device() == "cpu" else 1e-4
BF16_RTOL_SAME_INPUTS = 1e-2
BF16_RTOL_VS_F32_INPUTS = 1e-1
GRAD_RTOL = 2e-5
HYPOTHESIS = settings(max_examples=examples(25, 2000))


# ----------------------------------------------------------------------------------------------- helpers
def make_inputs(seed, B=2, NH=2, S=20, DK=5, DV=7, gates="normal", with_state=False):
    """float64 numpy q, k, v, i, f, state holding exactly the float32 values the kernels will see."""
    rng = np.random.default_rng(seed)
    q, k = rng.normal(size=(B, NH, S, DK)), rng.normal(size=(B, NH, S, DK))
    v = rng.normal(size=(B, NH, S, DV))
    if gates == "normal":
        i, f = rng.normal(size=(B, NH, S)) * 3, rng.normal(size=(B, NH, S)) * 3 + 2
    elif gates == "extreme":  # at and near the soft cap of +-15
        i = rng.choice([-15.0, -14.75, 0.0, 14.75, 15.0], size=(B, NH, S))
        f = rng.choice([-15.0, -14.75, 10.0, 15.0], size=(B, NH, S))
    elif gates == "forgetful":  # forget gate nearly closed everywhere (log f ~ -6), small input gates
        i, f = rng.normal(size=(B, NH, S)) - 5, rng.normal(size=(B, NH, S)) - 6
    else:
        raise ValueError(gates)
    i, f = np.clip(i, -15, 15), np.clip(f, -15, 15)
    state = None
    if with_state:
        state = (rng.normal(size=(B, NH, DK, DV)), rng.normal(size=(B, NH, DK)), rng.normal(size=(B, NH)) * 3)
    as32 = lambda a: np.asarray(a, np.float32).astype(np.float64)  # noqa: E731
    return (as32(q), as32(k), as32(v), as32(i), as32(f), None if state is None else tuple(as32(a) for a in state))


def to_mx(arrays, dtype=mx.float32):
    return [mx.array(np.asarray(a, np.float32)).astype(dtype) for a in arrays]


def run(fn, inputs, *, chunk_size=16, mask=None, dtype=mx.float32):
    """Call a kernel on numpy inputs; numpy float64 h and state back."""
    q, k, v, i, f, state = inputs
    st_mx = None if state is None else tuple(to_mx(state))
    h, (C, n, m) = fn(*to_mx((q, k, v, i, f), dtype), st_mx, chunk_size=chunk_size,
                      mask=None if mask is None else mx.array(mask))
    return np.array(h.astype(mx.float32), np.float64), tuple(np.array(a, np.float64) for a in (C, n, m))


def step_by_step(inputs, *, chunk_size=None, mask=None, dtype=mx.float32):
    """The step kernel called once per token, carrying the state."""
    q, k, v, i, f, state = inputs
    hs = []
    for t in range(q.shape[2]):
        sl = slice(t, t + 1)
        h, state = run(mlstm_step_native, (q[:, :, sl], k[:, :, sl], v[:, :, sl], i[:, :, sl], f[:, :, sl], state),
                       mask=None if mask is None else mask[:, sl], dtype=dtype)
        hs.append(h)
    return np.concatenate(hs, axis=2), state


def sliced(inputs, a, b, state):
    q, k, v, i, f, _ = inputs
    return (q[:, :, a:b], k[:, :, a:b], v[:, :, a:b], i[:, :, a:b], f[:, :, a:b], state)


def rel_err(actual, expected):
    """max |actual - expected| relative to the magnitude of expected (at least 1)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    if expected.size == 0:
        return 0.0
    return float(np.abs(actual - expected).max()) / max(1.0, float(np.abs(expected).max()))


class Expected:
    """The float64 reference for some inputs, with the float32 tolerances for h and for each of C, n, m."""

    FLOOR_FACTOR = 4

    def __init__(self, inputs, mask=None):
        q, k, v, i, f, state = inputs
        self.h, self.state = mlstm_reference(q, k, v, i, f, state, mask=mask)
        runs = [mlstm_reference(q, k, v, i, f, state, mask=mask, dtype=np.float32)]
        rng = np.random.default_rng(0)
        jitter = lambda a: a * (1 + 2.0**-22 * rng.uniform(-1, 1, size=np.shape(a)))  # noqa: E731
        for _ in range(2):
            st_j = None if state is None else tuple(jitter(a) for a in state)
            runs.append(mlstm_reference(jitter(q), jitter(k), jitter(v), jitter(i), jitter(f), st_j, mask=mask))
        floor = lambda errs: max(F32_RTOL, self.FLOOR_FACTOR * max(errs))  # noqa: E731
        self.tol = floor([rel_err(h, self.h) for h, _ in runs])
        self.state_tol = [floor([rel_err(st_[j], self.state[j]) for _, st_ in runs]) for j in range(3)]

    def check(self, h, state, what="h"):
        assert_close(h, self.h, self.tol, what=what)
        assert_state_close(state, self.state, self.state_tol)


def assert_close(actual, expected, rtol=F32_RTOL, what="h"):
    assert np.all(np.isfinite(actual)), f"{what} has NaN/inf"
    err = rel_err(actual, expected)
    assert err <= rtol, f"{what}: relative error {err:.3g} > {rtol:g}"


def assert_state_close(actual, expected, rtol=F32_RTOL):
    rtols = rtol if isinstance(rtol, (list, tuple)) else [rtol] * 3
    for name, a, b, t in zip("Cnm", actual, expected, rtols):
        assert_close(a, b, t, what=f"state {name}")


FORMS = {"chunkwise": mlstm_chunkwise_native, "sequence": mlstm_sequence_native,
         "step-by-step": lambda *a, **kw: None}  # the last is run through step_by_step()


def run_form(form, inputs, *, chunk_size=16, mask=None, dtype=mx.float32):
    if form == "step-by-step":
        return step_by_step(inputs, mask=mask, dtype=dtype)
    return run(FORMS[form], inputs, chunk_size=chunk_size, mask=mask, dtype=dtype)


# ------------------------------------------------------------------------- every form = the recurrence
@pytest.mark.parametrize("L", [1, 3, 16, 64])
@pytest.mark.parametrize("S_of_L", ["1", "L-1", "L", "L+1", "3*L+2"])
@pytest.mark.parametrize("with_state", [False, True], ids=["zero-state", "with-state"])
def test_every_form_matches_the_reference_at_chunk_borders(L, S_of_L, with_state):
    S = max(1, eval(S_of_L, {"L": L}))
    DK, DV = (5, 7) if L % 2 else (3, 9)  # odd head dims
    inputs = make_inputs(L * 100 + S, S=S, DK=DK, DV=DV, with_state=with_state)
    ref = Expected(inputs)
    outs = {form: run_form(form, inputs, chunk_size=L) for form in FORMS}
    for form, (h, st_) in outs.items():
        ref.check(h, st_, what=f"{form} h")
    # and so the forms agree with each other
    h_c, st_c = outs["chunkwise"]
    for form in ("sequence", "step-by-step"):
        assert_close(h_c, outs[form][0], 2 * ref.tol, what=f"chunkwise vs {form}")
        assert_state_close(st_c, outs[form][1], [2 * t for t in ref.state_tol])


@HYPOTHESIS
@given(B=st.integers(1, 2), NH=st.integers(1, 3), S=st.integers(1, 90), L=st.integers(1, 40), DK=st.integers(1, 9),
       DV=st.integers(1, 9), seed=st.integers(0, 2**31 - 1), gates=st.sampled_from(["normal", "extreme", "forgetful"]),
       with_state=st.booleans(), masked=st.booleans())
def test_any_length_and_chunk_size_matches_the_reference(B, NH, S, L, DK, DV, seed, gates, with_state, masked):
    inputs = make_inputs(seed, B=B, NH=NH, S=S, DK=DK, DV=DV, gates=gates, with_state=with_state)
    mask = None
    if masked:
        mask = np.random.default_rng(seed).random((B, S)) > 0.3
    ref = Expected(inputs, mask)
    for form in ("chunkwise", "sequence"):
        h, st_ = run_form(form, inputs, chunk_size=L, mask=mask)
        ref.check(h, st_, what=f"{form} h")


@pytest.mark.parametrize("S, L", [(8, 8), (5, 8)])
def test_a_single_chunk_uses_the_written_out_form_and_matches_the_reference(S, L):
    """One chunk in all (S <= L): the one-chunk path, which keeps a K=1 matmul out of the graph (it gave
    intermittent NaN on MLX-CUDA 0.32.4)."""
    inputs = make_inputs(21, B=2, NH=2, S=S, DK=3, DV=5, with_state=True)
    Expected(inputs).check(*run(mlstm_chunkwise_native, inputs, chunk_size=L))


@pytest.mark.parametrize("form", list(FORMS))
@pytest.mark.parametrize("gates", ["extreme", "forgetful"])
def test_extreme_gates_stay_finite_and_exact(form, gates):
    """Gates at the +-15 soft cap and forget gates nearly closed (log f down to -15 per token)."""
    inputs = make_inputs(5, S=40, gates=gates, with_state=True)
    Expected(inputs).check(*run_form(form, inputs, chunk_size=7))


def test_a_closed_forget_gate_erases_the_past():
    """f = -15 forgets (factor ~3e-7); i = 15 right after makes the new token dominate."""
    q, k, v, i, f, state = make_inputs(2, B=1, NH=1, S=9, DK=4, DV=4, with_state=True)
    f[..., 4], i[..., 4] = -15.0, 15.0
    ref = Expected((q, k, v, i, f, state))
    for form in FORMS:
        ref.check(*run_form(form, (q, k, v, i, f, state), chunk_size=4))


# ------------------------------------------------------------------------------------------ dtypes
@pytest.mark.parametrize("form", list(FORMS))
def test_bfloat16_inputs_track_the_reference(form):
    inputs = make_inputs(21, S=33, with_state=True)
    def to_bf16(a):
        return np.array(mx.array(np.asarray(a, np.float32)).astype(mx.bfloat16).astype(mx.float32), np.float64)
    rounded = (*[to_bf16(a) for a in inputs[:5]], inputs[5])  # what a bf16 kernel actually sees (state stays f32)
    h, st_ = run_form(form, inputs, chunk_size=8, dtype=mx.bfloat16)
    same = Expected(rounded)
    assert h.dtype == np.float64 and rel_err(h, same.h) <= BF16_RTOL_SAME_INPUTS
    assert_state_close(st_, same.state, same.state_tol)  # the state is float32 and never rounded to bf16
    # end to end, from the zero state: bf16 rounding of the inputs themselves included
    h0, _ = run_form(form, (*inputs[:5], None), chunk_size=8, dtype=mx.bfloat16)
    assert rel_err(h0, mlstm_reference(*inputs[:5], None)[0]) <= BF16_RTOL_VS_F32_INPUTS


@pytest.mark.parametrize("form", ["chunkwise", "sequence"])
@pytest.mark.parametrize("dtype", [mx.float32, mx.float16, mx.bfloat16])
def test_h_comes_back_in_the_dtype_of_v_and_the_state_in_float32(form, dtype):
    q, k, v, i, f, _ = make_inputs(3, S=10)
    h, (C, n, m) = FORMS[form](*to_mx((q, k, v), dtype), *to_mx((i, f), dtype), None, chunk_size=4)
    assert h.dtype == dtype and h.shape == (2, 2, 10, 7)
    assert (C.dtype, n.dtype, m.dtype) == (mx.float32,) * 3
    assert (C.shape, n.shape, m.shape) == ((2, 2, 5, 7), (2, 2, 5), (2, 2))


# ------------------------------------------------------------------------------------- state passing
@pytest.mark.parametrize("cut", [1, 7, 8, 9, 24, 49])
def test_splitting_a_sequence_anywhere_and_carrying_the_state_equals_one_pass(cut):
    inputs = make_inputs(11, S=50, with_state=True)
    ref = Expected(inputs)
    h_full, st_full = run(mlstm_chunkwise_native, inputs, chunk_size=8)
    h1, st1 = run(mlstm_chunkwise_native, sliced(inputs, 0, cut, inputs[5]), chunk_size=8)
    h2, st2 = run(mlstm_chunkwise_native, sliced(inputs, cut, 50, st1), chunk_size=5)  # another chunk size
    assert_close(np.concatenate([h1, h2], axis=2), h_full, 2 * ref.tol)  # both are within ref.tol of the reference
    assert_state_close(st2, st_full, [2 * t for t in ref.state_tol])
    # handing the state between forms works the same: a sequence-form prefill, then chunkwise
    h1s, st1s = run(mlstm_sequence_native, sliced(inputs, 0, cut, inputs[5]))
    h2s, st2s = run(mlstm_chunkwise_native, sliced(inputs, cut, 50, st1s), chunk_size=16)
    ref.check(np.concatenate([h1s, h2s], axis=2), st2s)


@HYPOTHESIS
@given(S=st.integers(2, 60), L=st.integers(1, 20), data=st.data())
def test_any_split_of_any_sequence_carries_the_state(S, L, data):
    cut = data.draw(st.integers(1, S - 1), label="cut")
    inputs = make_inputs(S * 31 + L, B=1, S=S, DK=3, DV=4, with_state=data.draw(st.booleans(), label="with_state"))
    ref = Expected(inputs)
    h_full, st_full = run(mlstm_chunkwise_native, inputs, chunk_size=L)
    h1, st1 = run(mlstm_chunkwise_native, sliced(inputs, 0, cut, inputs[5]), chunk_size=L)
    h2, st2 = run(mlstm_chunkwise_native, sliced(inputs, cut, S, st1), chunk_size=L)
    ref.check(h_full, st_full)
    ref.check(np.concatenate([h1, h2], axis=2), st2)


# ------------------------------------------------------------------------------------------- masking
@pytest.mark.parametrize("form", list(FORMS))
def test_masked_positions_leave_the_state_unchanged_and_output_zero(form):
    inputs = make_inputs(7, B=2, S=12, with_state=True)
    mask = np.ones((2, 12), bool)
    mask[0, :5] = False  # left padding
    mask[1, 4:7] = False  # a hole across a chunk border
    h, st_ = run_form(form, inputs, chunk_size=4, mask=mask)
    Expected(inputs, mask).check(h, st_)
    assert np.all(h[0, :, :5] == 0) and np.all(h[1, :, 4:7] == 0)
    # all positions masked: h is exactly 0 and the state comes back bit for bit as it went in
    h0, st_same = run_form(form, inputs, chunk_size=4, mask=np.zeros((2, 12), bool))
    assert np.all(h0 == 0)
    for a, b in zip(st_same, inputs[5]):
        np.testing.assert_array_equal(a, b)
    # ... also from the zero state (m = 0)
    _, st_zero = run_form(form, (*inputs[:5], None), chunk_size=4, mask=np.zeros((2, 12), bool))
    assert all(np.all(a == 0) for a in st_zero)


@pytest.mark.parametrize("form", list(FORMS))
@pytest.mark.parametrize("pad", [1, 4, 6])
def test_a_left_padded_batch_row_equals_the_unpadded_row(form, pad):
    S = 10
    q, k, v, i, f, _ = make_inputs(9, B=1, S=S)
    other = make_inputs(10, B=1, S=S + pad)  # a second, unpadded row in the same batch
    # (padding values must not matter)
    junk = lambda a: np.concatenate([np.full_like(a[:, :, :pad], 123.0), a], axis=2)  # noqa: E731
    batch = tuple(np.concatenate([junk(a), b], axis=0) for a, b in zip((q, k, v, i, f), other[:5]))
    mask = np.array([[False] * pad + [True] * S, [True] * (S + pad)])
    h_p, st_p = run_form(form, (*batch, None), chunk_size=4, mask=mask)
    h_u, st_u = run_form(form, (q, k, v, i, f, None), chunk_size=4)
    ref = Expected((q, k, v, i, f, None))
    ref.check(h_u, st_u)
    ref.check(h_p[:1, :, pad:], tuple(a[:1] for a in st_p))
    assert np.all(h_p[:1, :, :pad] == 0)
    h_o, st_o = run_form(form, (*other[:5], None), chunk_size=4)
    ref_o = Expected((*other[:5], None))  # the unpadded row is unaffected by its neighbour's padding
    ref_o.check(h_o, st_o)
    ref_o.check(h_p[1:], tuple(a[1:] for a in st_p))


# --------------------------------------------------------------------------------------- long inputs
def test_a_65k_token_sequence_is_stable():
    """S = 65536: no overflow anywhere (everything is kept in log space relative to the stabiliser)."""
    S = 65536
    inputs = make_inputs(1, B=1, NH=1, S=S, DK=4, DV=4)
    q, k, v, i, f, _ = inputs
    h, (C, n, m) = run(mlstm_chunkwise_native, inputs, chunk_size=256)
    assert all(np.all(np.isfinite(a)) for a in (h, C, n, m))
    # the last 300 outputs also follow from the sequence form started from the state 300 tokens earlier
    _, st_mid = run(mlstm_chunkwise_native, sliced(inputs, 0, S - 300, None), chunk_size=256)
    h_tail, _ = run(mlstm_sequence_native, sliced(inputs, S - 300, S, st_mid))
    assert_close(h[:, :, -300:], h_tail, rtol=1e-4)
    # chunk size 1 (65536 chunks, run in the segments a plan cuts them into) agrees as well
    hs, st1 = [], None
    for a, b in segment_bounds(S, MAX_CHUNKS):
        h_s, st1 = run(mlstm_chunkwise_native, sliced(inputs, a, b, st1), chunk_size=1)
        hs.append(h_s)
    h1, (C1, n1, m1) = np.concatenate(hs, axis=2), st1
    assert_close(h1, h, rtol=5e-4)  # different summation orders over 65k float32 accumulations
    assert_close(m1, m)


def test_a_65k_token_sequence_with_saturated_gates_is_stable():
    """Forget gates fully open (f = 15: n and C sum ~65k terms) and input gates at the cap."""
    S = 65536
    rng = np.random.default_rng(8)
    q, k, v, _, _, _ = make_inputs(8, B=1, NH=1, S=S, DK=4, DV=4)
    i = rng.choice([-15.0, 15.0], size=(1, 1, S))
    f = np.full((1, 1, S), 15.0)
    h, st_ = run(mlstm_chunkwise_native, (q, k, v, i, f, None), chunk_size=64)
    assert np.all(np.isfinite(h)) and all(np.all(np.isfinite(a)) for a in st_)


# ---------------------------------------------------------------------------------------- gradients
def test_gradients_of_chunkwise_equal_gradients_of_sequence():
    """mx.grad through every input, the initial state included, with a mask and a partial last chunk."""
    q, k, v, i, f, (C0, n0, m0) = make_inputs(4, B=2, S=11, with_state=True)
    args = to_mx((q, k, v, i, f, C0, n0, m0))
    mask = mx.array(np.array([[False, False] + [True] * 9, [True] * 11]))

    def loss(fn, q, k, v, i, f, C0, n0, m0):
        h, (C, n, m) = fn(q, k, v, i, f, (C0, n0, m0), chunk_size=4, mask=mask)
        return mx.sum(h * h) + mx.sum(C * C) + mx.sum(n) + mx.sum(m)

    argnums = tuple(range(8))
    g_chunk = mx.grad(lambda *a: loss(mlstm_chunkwise_native, *a), argnums=argnums)(*args)
    g_seq = mx.grad(lambda *a: loss(mlstm_sequence_native, *a), argnums=argnums)(*args)
    for name, a, b in zip(["q", "k", "v", "i", "f", "C0", "n0", "m0"], g_chunk, g_seq):
        a, b = np.array(a), np.array(b)
        assert np.all(np.isfinite(a)), name
        assert rel_err(a, b) <= GRAD_RTOL, f"d/d{name}: {rel_err(a, b):.2e}"
    # masked tokens do not influence anything
    assert np.all(np.array(g_chunk[3])[0, :, :2] == 0) and np.all(np.array(g_chunk[0])[0, :, :2] == 0)


def test_gradients_stay_finite_at_extreme_gates_and_in_padded_chunks():
    q, k, v, i, f, _ = make_inputs(6, B=1, S=13, gates="extreme")
    mask = mx.array(np.array([[False] * 5 + [True] * 8]))
    grads = mx.grad(lambda *a: mx.sum(mlstm_chunkwise_native(*a, None, chunk_size=4, mask=mask)[0] ** 2),
                    argnums=(0, 1, 2, 3, 4))(*to_mx((q, k, v, i, f)))
    assert all(np.all(np.isfinite(np.array(g))) for g in grads)


# --------------------------------------------------------------------------------- argument checking
def test_the_step_kernel_refuses_more_than_one_token():
    with pytest.raises(ValueError, match="exactly one token"):
        run(mlstm_step_native, make_inputs(0, S=2))


def test_chunk_size_must_be_positive():
    with pytest.raises(ValueError, match="chunk_size"):
        run(mlstm_chunkwise_native, make_inputs(0, S=4), chunk_size=0)


@pytest.mark.parametrize("form", ["chunkwise", "sequence"])
def test_an_empty_sequence_returns_no_output_and_the_same_state(form):
    inputs = make_inputs(0, S=0, with_state=True)
    h, st_ = run(FORMS[form], inputs)
    assert h.shape == (2, 2, 0, 7)
    for a, b in zip(st_, inputs[5]):
        np.testing.assert_array_equal(a, b)


# -------------------------------------------------------------------------------------------- registry
def test_importing_the_kernels_package_registers_each_native_form():
    assert kernels_pkg.get_kernel is get_kernel
    for form, fn in (("chunkwise", mlstm_chunkwise_native), ("sequence", mlstm_sequence_native),
                     ("step", mlstm_step_native)):
        info = get_kernel("mlstm", f"native_{form}")
        assert (info.family, info.form, info.fn, info.backend, info.priority) == ("mlstm", form, fn, "native", 0)
        assert info.supports(device="cpu", dtype="bfloat16") is None
        assert info.supports(device="gpu", dtype="float16") is None
        assert info.doc


def test_the_scheduler_picks_the_native_kernels_on_cpu():
    assert select_kernel("mlstm", "chunkwise", device="cpu", dtype="float32").fn is mlstm_chunkwise_native
    assert select_kernel("mlstm", "sequence", device="cpu", dtype="bfloat16").fn is mlstm_sequence_native
    with pytest.raises(LookupError, match="no mlstm chunkwise kernel applies"):
        select_kernel("mlstm", "chunkwise", device="cpu", dtype="int8")


def test_fused_step_kernels_share_one_algorithm_and_refuse_themselves_when_wrong():
    import warnings

    from xlstm_metal.kernels.mlstm import fused_step

    cuda, metal = gpu.source(fused_step.KERNEL.body, "cuda"), gpu.source(fused_step.KERNEL.body, "metal")
    def strip(src, backend):
        return [line for line in src.splitlines() if not any(v in line for v in gpu.IDIOMS[backend].values())]
    assert strip(cuda, "cuda") == strip(metal, "metal")  # only the thread indexing differs
    # the first-use check accepts a correct kernel and refuses (with a warning) a wrong one
    gpu.set_verdict(fused_step.FUSED.name, "test-good", None)
    gpu.set_verdict(fused_step.FUSED.name, "test-bad", None)
    assert fused_step.FUSED.check("test-good", mlstm_step_native)

    def wrong(q, k, v, i, f, state=None, **kw):
        h, st = mlstm_step_native(q, k, v, i, f, state, **kw)
        return h * 1.01, st

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert not fused_step.FUSED.check("test-bad", wrong)
    assert any("disabled" in str(w.message) for w in caught)

    def nan_state(q, k, v, i, f, state=None, **kw):  # a NaN after a finite output must not be lost
        h, (C, n, m) = mlstm_step_native(q, k, v, i, f, state, **kw)
        return h, (C, n * float("nan"), m)

    gpu.set_verdict(fused_step.FUSED.name, "test-nan", None)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        assert not fused_step.FUSED.check("test-nan", nan_state)


def test_fused_kernels_are_registered_but_not_selected_without_their_gpu():
    names = [k.name for k in kernels("mlstm", "step")]
    assert names[:2] == ["cuda_step", "metal_step"]  # preferred where they run
    if not mx.cuda.is_available() and not mx.metal.is_available():
        assert select_kernel("mlstm", "step", device="cpu", dtype="float32").name == "native_step"


@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_the_compiled_chunkwise_kernel_computes_what_the_native_one_does(with_state, masked):
    """Same math under mx.compile: equal to the eager kernel (to float32 rounding), state and padding included."""
    from xlstm_metal.kernels.mlstm.compiled import mlstm_chunkwise_compiled

    for S, L in ((5, 8), (37, 8), (64, 16)):
        *arrays, state = make_inputs(31, B=2, NH=2, S=S, DK=4, DV=3, with_state=with_state)
        q, k, v, i, f = to_mx(arrays)
        state = None if state is None else tuple(to_mx(state))
        mask = mx.array(np.random.default_rng(S).random((2, S)) > 0.3) if masked else None
        h_c, st_c = mlstm_chunkwise_compiled(q, k, v, i, f, state, chunk_size=L, mask=mask)
        h_n, st_n = mlstm_chunkwise_native(q, k, v, i, f, state, chunk_size=L, mask=mask)
        for a, b in zip((h_c, *st_c), (h_n, *st_n)):
            assert_close(np.array(a), np.array(b), 1e-6, what=f"compiled vs native, S={S} L={L}")


def test_gpu_chunkwise_kernels_are_preferred_on_the_gpu_only():
    """One chunkwise kernel per backend: bf16 tensor cores (CUDA, bfloat16, head dims in whole 16-byte rows) >
    compiled (any GPU) > native on the GPU; native on the CPU."""
    order = [k.name for k in kernels("mlstm", "chunkwise")]
    assert order == ["cuda_tc_chunkwise", "compiled_chunkwise", "native_chunkwise"]
    bf16 = "cuda_tc_chunkwise" if mx.cuda.is_available() else "compiled_chunkwise"  # it checks itself on first use
    assert select_kernel("mlstm", "chunkwise", device="gpu", dtype="bfloat16", head_dims=(64, 64)).name == bf16
    assert select_kernel("mlstm", "chunkwise", device="gpu", dtype="bfloat16", head_dims=(12, 8)).name == \
        "compiled_chunkwise"
    assert select_kernel("mlstm", "chunkwise", device="gpu", dtype="float32").name == "compiled_chunkwise"
    assert select_kernel("mlstm", "chunkwise", device="cpu", dtype="bfloat16").name == "native_chunkwise"


def test_training_plans_pick_only_kernels_that_gradients_flow_through(monkeypatch):
    """Fused GPU kernels have no VJP of their own (their gradient recomputes the reference): a plan for training
    skips them (and says so when one is pinned), while inference plans prefer them. Shown with a stand-in fused
    kernel that would win on any machine."""
    from xlstm_metal import xLSTMRunner
    from xlstm_metal.kernels import KernelInfo, current_device, registry
    from xlstm_metal.plan import make_plan

    fused = KernelInfo("mlstm", "chunkwise", "test_fused_no_gradient", mlstm_chunkwise_native, priority=1000,
                       differentiable=False)
    monkeypatch.setitem(registry._KERNELS, ("mlstm", fused.name), fused)
    dev = current_device()
    assert select_kernel("mlstm", "chunkwise", device=dev, dtype="float32").name == fused.name
    assert select_kernel("mlstm", "chunkwise", device=dev, dtype="float32", training=True).differentiable
    graph = xLSTMRunner.from_spec("xlstm_tiny", dtype="float32", seed=0).graph
    mlstm = [s for s in make_plan(graph, 128).steps if s.kernel is not None]
    assert mlstm and all(s.kernel.name == fused.name for s in mlstm)
    assert all(s.kernel.differentiable for s in make_plan(graph, 128, training=True).steps if s.kernel is not None)
    node = mlstm[0].node
    with pytest.raises(LookupError, match="has no gradient of its own"):
        make_plan(graph, 128, training=True, overrides={node: {"kernel": fused.name}})
