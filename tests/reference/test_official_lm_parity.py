"""Our blocks against the official ``xlstm.xLSTMLMModel`` (the xLSTM paper's architecture) on torch CPU,
float32: a directory written from the official model loads with ``from_pretrained`` and gives the same
logits (within 1e-4 of the largest logit) for a whole prompt, token by token, and continued from a state."""
from __future__ import annotations

import numpy as np
import mlx.core as mx
import pytest

from xlstm_metal.runner import xLSTMRunner

from official_lm import build, config, logits, save

STACKS = {  # name -> (num_blocks, slstm_at, extra config)
    "xLSTM[1:0]": (2, [], {}),
    "xLSTM[0:1]": (2, "all", {"mlstm": False}),
    "xLSTM[7:1]": (8, [5], {}),
    "xLSTM[1:0], input gates far below 0": (1, [], {"igate_bias": -12.0}),
    "biases, other widths, heads and block sizes": (3, [0], {
        "bias": True, "dim": 96, "slstm_heads": 2, "slstm_conv": 2,
        "mlstm_layer": {"num_heads": 2, "qkv_proj_blocksize": 8, "proj_factor": 1.5, "round_proj_up_to_multiple_of": 32,
                        "conv1d_kernel_size": 3},
        "ffn_config": {"proj_factor": 1.7, "round_proj_up_to_multiple_of": 32, "act_fn": "swish", "bias": True}}),
    "tied, no post norm, sLSTM without conv or FFN": (3, [1], {"tie": True, "post_norm": False, "slstm_conv": 0,
                                                              "ffn": False}),
}


@pytest.fixture(scope="module", params=list(STACKS))
def pair(request, tmp_path_factory):
    num_blocks, at, extra = STACKS[request.param]
    extra = dict(extra)
    igate_bias = extra.pop("igate_bias", 0.0)
    official = build(config(num_blocks, at, **extra), seed=len(request.param), igate_bias=igate_bias)
    ours = xLSTMRunner.from_pretrained(save(official, tmp_path_factory.mktemp("official_lm")))
    return official, ours


def close(ours, ref):
    ours = np.array(ours)
    err = np.abs(ours - ref).max() / np.abs(ref).max()
    assert err <= 1e-4, f"relative error {err:.2e}"


def tokens(seed, batch, length, vocab):
    return np.random.default_rng(seed).integers(0, vocab, (batch, length))


def test_prompt_logits_match(pair):
    official, ours = pair
    x = tokens(1, 2, 37, official.config.vocab_size)
    close(ours(mx.array(x))[0], logits(official, x))


def test_token_by_token_steps_match_the_official_prompt_logits(pair):
    official, ours = pair
    x = tokens(2, 2, 12, official.config.vocab_size)
    ref, state, got = logits(official, x), None, []
    for t in range(x.shape[1]):
        out, state = ours(mx.array(x[:, t:t + 1]), state)
        got.append(np.array(out))
    close(np.concatenate(got, axis=1), ref)


def test_state_carried_across_calls_matches(pair):
    official, ours = pair
    x = tokens(3, 2, 40, official.config.vocab_size)
    _, state = ours(mx.array(x[:, :17]))
    out, state = ours(mx.array(x[:, 17:30]), state)
    out2, _ = ours(mx.array(x[:, 30:31]), state)
    ref = logits(official, x)
    close(out, ref[:, 17:30])
    close(out2, ref[:, 30:31])


def test_left_padding_is_skipped(pair):
    official, ours = pair
    x = tokens(4, 1, 9, official.config.vocab_size)
    padded = np.concatenate([np.zeros((1, 4), np.int64), x], axis=1)
    mask = np.concatenate([np.zeros((1, 4), bool), np.ones((1, 9), bool)], axis=1)
    out, _ = ours(mx.array(np.concatenate([padded, padded])), mask=mx.array(np.concatenate([mask, mask])))
    close(np.array(out)[:, 4:], np.concatenate([logits(official, x)] * 2))


def test_several_chunks_match(pair):
    official, ours = pair
    mlstm = [n for n in ours.graph.compute_nodes() if ours.graph.node(n)["block_cls"].type_name == "mlstm_layer"]
    ours.set_overrides({n: {"chunk_size": 8} for n in mlstm})
    try:
        x = tokens(5, 2, 29, official.config.vocab_size)
        close(ours(mx.array(x))[0], logits(official, x))
    finally:
        ours.set_overrides({})
