"""The plan owns segmentation: inputs longer than a chosen kernel takes in one call (``KernelInfo.max_chunks``) run
in segments, the state carried across, whether the runner prefills (evaluating between segments) or ``execute`` is
called directly (training, MAD: one lazy graph, differentiable). Exact across segment borders, gradients included."""
import dataclasses

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten

from xlstm_metal import make_plan, xLSTMRunner
from xlstm_metal.kernels.mlstm.native import MAX_CHUNKS
from xlstm_metal.runtime import execute

CHUNK = 2  # 128 chunks of 2 tokens: segments of 256 tokens


@pytest.fixture(scope="module")
def runner():
    return xLSTMRunner.from_spec("xlstm_tiny", dtype="float32", seed=4, segment_len=None, compile=False)


def small_chunks(graph):
    return {n: {"chunk_size": CHUNK} for n in graph.compute_nodes() if graph.node(n)["block_cls"].kernel_family}


def whole(plan):
    """The same plan run in one piece (what a kernel without a call limit would do)."""
    return dataclasses.replace(plan, segment_len=None, segment_why="")


def close(a, b, tol=1e-4):
    return float(mx.abs(a - b).max()) <= tol * max(1.0, float(mx.abs(b).max()))


def test_a_plan_cuts_inputs_to_what_its_kernels_take_and_says_so(runner):
    plan = make_plan(runner.graph, 700, segment_len=None, overrides=small_chunks(runner.graph))
    assert plan.segment_len == MAX_CHUNKS * CHUNK == 256
    assert plan.segments == [(0, 256), (256, 512), (512, 700)]
    assert {s.max_tokens for s in plan.kernel_steps()} == {256}
    (kernel,) = {s.kernel.name for s in plan.kernel_steps()}  # native on the CPU, compiled on a GPU
    assert f"in 3 segments of ≤256 tokens ({kernel} takes ≤128 chunks a call)" in str(plan).splitlines()[0]
    d = plan.to_dict()
    assert d["segment_len"] == 256 and kernel in d["segment_why"]
    assert {s["max_tokens"] for s in d["steps"] if s["kernel"]} == {256}
    # the memory bound of the runner, where shorter, wins; a kernel without a limit cuts nothing
    assert make_plan(runner.graph, 700, segment_len=100, overrides=small_chunks(runner.graph)).segment_len == 100
    assert make_plan(runner.graph, 700, segment_len=None, overrides={
        n: {"kernel": "sequence"} for n in small_chunks(runner.graph)}).segments == [(0, 700)]


def test_execute_runs_the_segments_and_equals_one_piece_across_every_border(runner):
    """514 tokens: two full segments and a last one of a single chunk (the one-chunk path), a mask across the
    borders, an incoming state."""
    g = runner.graph
    S = 2 * 256 + 2
    rng = np.random.default_rng(0)
    tokens = mx.array(rng.integers(0, 512, size=(2, S)))
    mask = mx.array(np.arange(S)[None, :] >= np.array([[0], [300]]))  # the second row padded past a border
    _, state = runner(mx.array(rng.integers(0, 512, size=(2, 5))))
    plan = make_plan(g, S, segment_len=None, overrides=small_chunks(g))
    assert plan.segments[-1] == (512, 514)
    got, st = execute(g, plan, tokens, state, mask=mask)
    want, st_want = execute(g, whole(plan), tokens, state, mask=mask)
    assert close(got["lm_head"], want["lm_head"])
    assert all(close(a, b) for a, b in zip(st.arrays(), st_want.arrays()))
    assert st.tokens_seen == st_want.tokens_seen == state.tokens_seen + S
    # and the runner's prefill (evaluating between segments) honours the same plan
    r = xLSTMRunner.from_spec("xlstm_tiny", dtype="float32", seed=4, segment_len=None, compile=False)
    r.set_overrides(small_chunks(g))
    assert r.plan(S).segments == plan.segments
    logits, st_r = r(tokens, state, mask=mask)
    assert close(logits, want["lm_head"])
    last, _ = r(tokens, state, mask=mask, logits="last")
    assert close(last, want["lm_head"][:, -1:])


def test_a_last_position_prefill_runs_the_blocks_after_the_last_cell_once(runner, monkeypatch):
    """With ``last_only``, segments before the last only carry the state: the position-wise blocks after the last
    stateful one run on the last segment alone, on its last position."""
    g = runner.graph
    plan = make_plan(g, 514, segment_len=None, overrides=small_chunks(g))
    assert len(plan.segments) == 3
    head = g.block(g.outputs[0])
    seen = []
    forward = head.forward
    monkeypatch.setattr(head, "forward", lambda inputs, state, ctx: seen.append(inputs[0].shape) or forward(
        inputs, state, ctx))
    tokens = mx.array(np.random.default_rng(1).integers(0, 512, size=(2, 514)))
    last, _ = execute(g, plan, tokens, last_only=True)
    assert len(seen) == 1 and seen[0][:2] == (2, 1)
    assert close(last[g.outputs[0]], execute(g, whole(plan), tokens)[0][g.outputs[0]][:, -1:])


def test_gradients_flow_through_the_segments_of_a_training_plan(runner):
    g = runner.graph
    S = 300
    rng = np.random.default_rng(1)
    x, y = (mx.array(rng.integers(0, 512, size=(1, S))) for _ in range(2))
    plan = make_plan(g, S, segment_len=None, training=True, overrides=small_chunks(g))
    assert len(plan.segments) == 2

    def loss_of(p):
        return lambda model: nn.losses.cross_entropy(execute(g, p, x, training=True)[0]["lm_head"], y,
                                                     reduction="mean")

    l1, g1 = nn.value_and_grad(runner.model, loss_of(plan))(runner.model)
    l2, g2 = nn.value_and_grad(runner.model, loss_of(whole(plan)))(runner.model)
    assert abs(l1.item() - l2.item()) <= 1e-5 * abs(l2.item())
    for (k, a), (_, b) in zip(tree_flatten(g1), tree_flatten(g2)):
        assert float(mx.abs(a - b).max()) <= 1e-4 * max(1e-2, float(mx.abs(b).max())), k
