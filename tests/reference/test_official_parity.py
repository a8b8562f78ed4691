"""We compute what the official NX-AI xLSTMLarge (xlstm 2.0.6, PyTorch, float32) computes.

Random official models in several configurations are saved in the Hugging Face layout, loaded
with ``xLSTMRunner.from_pretrained``, and compared: logits and final states (float32, <= 1e-4
relative to the largest value), and greedy generations (identical tokens). Where float32 rounding is amplified
beyond that (per-head norms over a few features), the logits are judged against the official model run in float64:
ours may be no further from it than the official's own float32 result.
"""
import copy

import mlx.core as mx
import numpy as np
import pytest

from official import build, clone_state, forward, state_arrays
from xlstm_metal import xLSTMRunner

pytestmark = pytest.mark.reference
RTOL = 1e-4

CONFIGS = {
    "odd-heads": dict(embedding_dim=48, num_heads=3),
    "fused": dict(embedding_dim=48, num_heads=3, weight_mode="fused"),
    "bias-and-factors": dict(embedding_dim=40, num_heads=5, qk_dim_factor=1.0, v_dim_factor=0.5, use_bias=True),
    "one-head-deep": dict(embedding_dim=32, num_heads=1, num_blocks=4, chunk_size=8),
    "no-out-norm": dict(embedding_dim=24, num_heads=2, add_out_norm=False, output_logit_soft_cap=5.0, gate_soft_cap=3.0),
}


def rel(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max()) / max(1.0, float(np.abs(np.asarray(b)).max()))


def assert_matches(logits, state, ref_logits, ref_state, exact_logits=None):
    """``exact_logits()``: the official model's logits in float64, consulted only when float32 noise exceeds RTOL."""
    if rel(logits, ref_logits) > RTOL and exact_logits is not None:
        exact = exact_logits()
        assert rel(logits, exact) <= max(RTOL, 1.5 * rel(ref_logits, exact))
    else:
        assert rel(logits, ref_logits) <= RTOL
    for a, b in zip(state.arrays(), state_arrays(ref_state)):
        assert rel(a, b) <= RTOL


@pytest.fixture(scope="module", params=list(CONFIGS))
def pair(request, tmp_path_factory):
    d = tmp_path_factory.mktemp(request.param)
    official = build(d, seed=len(request.param), **CONFIGS[request.param])
    ours = xLSTMRunner.from_pretrained(d)
    return official, ours


def in_float64(official):
    return copy.deepcopy(official).double()


def tokens(seed, B, S, vocab):
    return np.random.default_rng(seed).integers(0, vocab, size=(B, S))


@pytest.mark.parametrize("S", [1, 15, 16, 37])
def test_logits_and_final_state_match(pair, S):
    official, ours = pair
    x = tokens(S, 2, S, official.config.vocab_size)
    ref_logits, ref_state = forward(official, x)
    logits, state = ours(mx.array(x, dtype=mx.int32))
    assert_matches(logits, state, ref_logits, ref_state, lambda: forward(in_float64(official), x)[0])


def test_continuing_from_a_state_matches(pair):
    official, ours = pair
    x = tokens(5, 2, 45, official.config.vocab_size)
    _, ref_state = forward(official, x[:, :21])
    ref_logits, ref_state = forward(official, x[:, 21:], clone_state(ref_state))
    _, state = ours(mx.array(x[:, :21], dtype=mx.int32))
    logits, state = ours(mx.array(x[:, 21:], dtype=mx.int32), state)

    def exact():
        exact_model = in_float64(official)
        _, st = forward(exact_model, x[:, :21])
        return forward(exact_model, x[:, 21:], st)[0]

    assert_matches(logits, state, ref_logits, ref_state, exact)


def test_greedy_generation_gives_identical_tokens(pair):
    official, ours = pair
    prompt = tokens(9, 1, 19, official.config.vocab_size)
    logits, st = forward(official, prompt)
    ref_tokens = []
    for _ in range(12):
        nxt = int(logits[0, -1].argmax())
        ref_tokens.append(nxt)
        logits, st = forward(official, np.array([[nxt]]), st)
    ours_tokens = [r.token for r in ours.stream(prompt[0].tolist(), max_tokens=12, eos_token_ids=set())]
    assert ours_tokens == ref_tokens
