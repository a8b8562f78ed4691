"""The official xLSTMLMModel family without the reference package: the shipped spec is what a config derives,
the mLSTM/sLSTM layers' step form equals their prompt form, padding is skipped, both stored sLSTM layouts read
the same, and bad config fields are named."""
from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten, tree_map, tree_unflatten

from xlstm_metal.blocks import NodeContext, TensorType
from xlstm_metal.blocks.slstm_layer import SLSTMLayer
from xlstm_metal.checkpoint.config import ConfigError
from xlstm_metal.checkpoint.official_lm import official_lm_spec
from xlstm_metal.graph import build_graph
from xlstm_metal.runner import xLSTMRunner

TINY = {"embedding_dim": 64, "vocab_size": 256, "num_blocks": 3, "slstm_at": [1],
        "mlstm_block": {"mlstm": {"num_heads": 4}}, "slstm_block": {"slstm": {"num_heads": 4, "backend": "vanilla"}}}


def shapes(graph):
    return {n: {k: v.shape for k, v in tree_flatten(graph.block(n).parameters())} for n in graph.compute_nodes()}


def test_the_shipped_spec_is_what_the_config_derives():
    assert shapes(build_graph("xlstm_lm_tiny")) == shapes(build_graph(official_lm_spec(TINY)))


@pytest.fixture(scope="module")
def runner():
    r = xLSTMRunner.from_spec("xlstm_lm_tiny", seed=3)
    key = iter(mx.random.split(mx.random.key(5), 200))  # every parameter random (init zeros hide bugs)
    params = tree_map(lambda p: p + 0.3 * mx.random.normal(p.shape, key=next(key)), r.model.parameters())
    r.model.update(params)
    return r


def tokens(seed, batch, length):
    return mx.array(np.random.default_rng(seed).integers(0, 256, (batch, length)))


def test_steps_equal_the_prompt_and_chunk_sizes_agree(runner):
    x = tokens(0, 2, 19)
    full, _ = runner(x)
    state, steps = None, []
    for t in range(x.shape[1]):
        out, state = runner(x[:, t:t + 1], state)
        steps.append(out)
    np.testing.assert_allclose(np.array(mx.concatenate(steps, axis=1)), np.array(full), rtol=1e-4, atol=1e-4)
    runner.set_overrides({n: {"chunk_size": 4} for n in runner.graph.compute_nodes() if n.endswith(".xlstm")})
    try:
        chunked, _ = runner(x)
    finally:
        runner.set_overrides({})
    np.testing.assert_allclose(np.array(chunked), np.array(full), rtol=1e-4, atol=1e-4)


def test_left_padding_is_skipped(runner):
    x = tokens(1, 1, 7)
    alone, _ = runner(x)
    padded = mx.concatenate([mx.zeros((1, 3), mx.int32), x], axis=1)
    mask = mx.array([[False] * 3 + [True] * 7])
    out, state = runner(padded, mask=mask)
    np.testing.assert_allclose(np.array(out[:, 3:]), np.array(alone), rtol=1e-4, atol=1e-4)
    nxt = tokens(2, 1, 1)
    after_pad, _ = runner(nxt, state)
    after_alone, _ = runner(nxt, runner(x)[1])
    np.testing.assert_allclose(np.array(after_pad), np.array(after_alone), rtol=1e-4, atol=1e-4)


def test_both_stored_slstm_layouts_compute_the_same():
    mx.random.seed(0)
    vanilla = SLSTMLayer(SLSTMLayer.Params(num_heads=2, backend="vanilla"), [TensorType.features(16)])
    cuda = SLSTMLayer(SLSTMLayer.Params(num_heads=2, backend="cuda"), [TensorType.features(16)])
    vanilla.slstm_cell.recurrent_kernel = mx.random.normal((2, 32, 8)) * 0.3  # [head, gate * to, from]
    vanilla.slstm_cell.bias = mx.random.normal((64,))  # [gate, head, to]
    params = dict(tree_flatten(vanilla.parameters()))
    params["slstm_cell.recurrent_kernel"] = params["slstm_cell.recurrent_kernel"].swapaxes(1, 2)
    params["slstm_cell.bias"] = params["slstm_cell.bias"].reshape(4, 2, 8).transpose(1, 0, 2).reshape(-1)
    cuda.update(tree_unflatten(list(params.items())))
    x = mx.random.normal((2, 5, 16))
    a, _ = vanilla([x], None, NodeContext())
    b, _ = cuda([x], None, NodeContext())
    np.testing.assert_allclose(np.array(a), np.array(b), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("change, field", [
    ({"slstm_at": [3]}, "slstm_at"),
    ({"vocab_size": None}, "vocab_size"),
    ({"slstm_block": None}, "slstm_at"),
    ({"mlstm_block": {"mlstm": {"proj_factor": True}}}, "mlstm_block.mlstm.proj_factor"),
    ({"slstm_block": {"slstm": {"function": "lstm"}}}, "slstm_block.slstm.function"),
])
def test_bad_config_fields_are_named(change, field):
    raw = dict(TINY, **change)
    with pytest.raises(ConfigError) as exc:
        official_lm_spec(raw, source="cfg.json")
    assert f"'{field}'" in str(exc.value) and "cfg.json" in str(exc.value)
