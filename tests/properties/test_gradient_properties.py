"""Training through the chunkwise kernels gives the gradients of step-by-step decoding, for random architectures."""
import mlx.core as mx
import mlx.nn as nn
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from mlx.utils import tree_flatten

from budget import examples
from xlstm_metal import xLSTMRunner
from xlstm_metal.plan import make_plan
from xlstm_metal.runtime import execute
from xlstm_metal.testing.strategies import wiring_specs


@settings(max_examples=examples(8, 200))
@given(spec=wiring_specs(max_depth=2, patterns=("prenorm", "parallel", "skip_two", "slstm", "conv_mlp")),
       seed=st.integers(0, 1000), seq_len=st.integers(2, 14), chunk=st.integers(1, 8))
def test_chunkwise_gradients_equal_step_gradients(spec, seed, seq_len, chunk):
    runner = xLSTMRunner.from_spec(spec, seed=seed)
    g = runner.graph
    vocab = spec["dims"]["vocab"]
    rng = np.random.default_rng(seed)
    x = mx.array(rng.integers(0, vocab, size=(1, seq_len)), dtype=mx.int32)
    y = mx.array(rng.integers(0, vocab, size=(1, seq_len)), dtype=mx.int32)
    over = {n: {"kernel": "chunkwise", "chunk_size": chunk} for n in g.compute_nodes() if g.node(n)["block_cls"].kernel_family}
    chunk_plan, step_plan = make_plan(g, seq_len, overrides=over), make_plan(g, 1)

    def chunk_loss(model):
        return nn.losses.cross_entropy(execute(g, chunk_plan, x, training=True)[0]["lm_head"], y, reduction="mean")

    def step_loss(model):
        state, logits = None, []
        for t in range(seq_len):
            outs, state = execute(g, step_plan, x[:, t:t + 1], state, training=True)
            logits.append(outs["lm_head"])
        return nn.losses.cross_entropy(mx.concatenate(logits, axis=1), y, reduction="mean")

    _, g1 = nn.value_and_grad(runner.model, chunk_loss)(runner.model)
    _, g2 = nn.value_and_grad(runner.model, step_loss)(runner.model)
    for (k, a), (_, b) in zip(tree_flatten(g1), tree_flatten(g2)):
        a, b = np.array(a), np.array(b)
        assert np.all(np.isfinite(a)), k
        assert np.abs(a - b).max() <= 1e-4 * max(1e-2, np.abs(b).max()), (k, np.abs(a - b).max(), np.abs(b).max())
