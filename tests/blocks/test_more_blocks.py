"""sLSTM, causal conv1d, attention and gated MLP against float64 numpy; their step forms equal their full forms."""
import math

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten, tree_map

from xlstm_metal.blocks import NodeContext, TensorType, get_block
from xlstm_metal.checkpoint import block_keys, to_official

rng = np.random.default_rng(1)
F = TensorType.features


def make(type_name, dim, **params):
    cls = get_block(type_name)
    p = cls.Params.model_validate(params)
    b = cls(p, [F(dim)])
    b.update(tree_map(lambda a: mx.array(rng.normal(size=a.shape).astype(np.float32) * 0.5), b.parameters()))
    official = to_official(block_keys(b), dict(tree_flatten(b.parameters())))  # under the official names
    return b, {k: np.array(v, np.float64) for k, v in official.items()}


def close(a, b, rtol=2e-5):
    a = np.array(a, np.float64)
    assert np.abs(a - b).max() <= rtol * max(1.0, np.abs(b).max()), np.abs(a - b).max()


def stepwise(block, x, mask=None):
    state, outs = None, []
    for t in range(x.shape[1]):
        out, state = block([x[:, t:t + 1]], state, NodeContext(mask=None if mask is None else mask[:, t:t + 1]))
        outs.append(out)
    return mx.concatenate(outs, axis=1), state


def test_causal_conv1d():
    b, p = make("causal_conv1d", 6, kernel_size=3)
    x = rng.normal(size=(2, 7, 6))
    pad = np.concatenate([np.zeros((2, 2, 6)), x], axis=1)
    expected = sum(pad[:, j:j + 7] * p["weight"][:, j] for j in range(3)) + p["bias"]
    out, _ = b([mx.array(x.astype(np.float32))])
    close(out, expected)
    step, _ = stepwise(b, mx.array(x.astype(np.float32)))
    close(step, expected)


def slstm_numpy(p, x, nh, eps=1e-6):
    B, S, D = x.shape
    hd = D // nh
    c = n = m = h = np.zeros((B, D))
    outs = []
    for t in range(S):
        pre = (x[:, t] @ p["gates.weight"].T + p["gates.bias"]).reshape(B, 4, nh, hd)
        rec = np.einsum("bhk,hkj->bhj", h.reshape(B, nh, hd), p["recurrent"]).reshape(B, nh, 4, hd).transpose(0, 2, 1, 3)
        g = (pre + rec).reshape(B, 4, D)
        i, f, z, o = g[:, 0], g[:, 1], g[:, 2], g[:, 3]
        logf = -np.logaddexp(0, -f)
        m_new = np.maximum(logf + m, i)
        ia, fa = np.exp(i - m_new), np.exp(logf + m - m_new)
        c, n, m = fa * c + ia * np.tanh(z), fa * n + ia, m_new
        h = 1 / (1 + np.exp(-o)) * c / (n + eps)
        outs.append(h)
    return np.stack(outs, 1)


def test_slstm_matches_the_recurrence_and_steps():
    b, p = make("slstm", 8, num_heads=2)
    x = rng.normal(size=(2, 9, 8)).astype(np.float32)
    out, _ = b([mx.array(x)])
    close(out, slstm_numpy(p, x.astype(np.float64), 2))
    step, _ = stepwise(b, mx.array(x))
    close(step, np.array(out, np.float64))


def attention_numpy(p, x, nh, window=None, theta=10000.0):
    B, S, D = x.shape
    hd = D // nh
    q, k, v = (x @ p[f"{n}.weight"].T for n in "qkv")
    heads = lambda t: t.reshape(B, S, nh, hd).transpose(0, 2, 1, 3)  # noqa: E731
    q, k, v = heads(q), heads(k), heads(v)
    half = hd // 2
    inv = theta ** (-np.arange(half) / half)
    ang = np.arange(S)[:, None] * inv
    def rope(t):
        t1, t2 = t[..., :half], t[..., half:2 * half]
        return np.concatenate([t1 * np.cos(ang) - t2 * np.sin(ang), t1 * np.sin(ang) + t2 * np.cos(ang)], -1)
    q, k = rope(q), rope(k)
    s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(hd)
    allowed = np.tril(np.ones((S, S), bool))
    if window:
        allowed &= np.arange(S)[None, :] > np.arange(S)[:, None] - window
    s = np.where(allowed, s, -np.inf)
    w = np.exp(s - s.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    h = (w @ v).transpose(0, 2, 1, 3).reshape(B, S, D)
    return h @ p["out_proj.weight"].T


@pytest.mark.parametrize("window", [None, 3])
def test_attention_matches_softmax_attention_and_decodes_with_its_cache(window):
    b, p = make("attention", 8, num_heads=2, window=window)
    x = rng.normal(size=(2, 10, 8)).astype(np.float32)
    out, state = b([mx.array(x)])
    close(out, attention_numpy(p, x.astype(np.float64), 2, window))
    step, st = stepwise(b, mx.array(x))
    close(step, np.array(out, np.float64))
    if window:
        assert st[0].shape[2] == window  # the cache stays bounded


@pytest.mark.parametrize("act", ["gelu", "relu", "silu"])
def test_gated_mlp(act):
    b, p = make("gated_mlp", 8, activation=act, proj_factor=2.0, round_up_to=8)
    x = rng.normal(size=(1, 3, 8))
    g, z = x @ p["proj_up_gate.weight"].T, x @ p["proj_up.weight"].T
    f = {"relu": lambda a: np.maximum(a, 0), "silu": lambda a: a / (1 + np.exp(-a)),
         "gelu": lambda a: 0.5 * a * (1 + np.vectorize(math.erf)(a / math.sqrt(2)))}[act]
    close(b([mx.array(x.astype(np.float32))])[0], (f(g) * z) @ p["proj_down.weight"].T)


@pytest.mark.parametrize("type_name, params", [("slstm", {"num_heads": 2}), ("causal_conv1d", {"kernel_size": 3}),
                                                ("attention", {"num_heads": 2})])
def test_padding_leaves_the_state_as_if_the_row_were_alone(type_name, params):
    b, _ = make(type_name, 8, **params)
    x = rng.normal(size=(1, 6, 8)).astype(np.float32)
    padded = np.concatenate([np.full((1, 4, 8), 7.0, np.float32), x], axis=1)
    mask = mx.array(np.array([[False] * 4 + [True] * 6]))
    out_p, st_p = b([mx.array(padded)], None, NodeContext(mask=mask))
    out_a, st_a = b([mx.array(x)])
    close(out_p[:, 4:], np.array(out_a, np.float64))
    nxt = mx.array(rng.normal(size=(1, 1, 8)).astype(np.float32))
    close(b([nxt], st_p)[0], np.array(b([nxt], st_a)[0], np.float64))
