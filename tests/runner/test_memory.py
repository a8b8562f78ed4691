"""Memory: what a prefill leaves alive is its state and its logits, nothing else.

A state array that is a slice of a larger kernel temporary (the states entering every chunk) keeps
that whole temporary alive for as long as the state is held. During a prefill every layer's state is
held until the end, so on the 7B shapes this cost ~0.26 GB per layer per 4k tokens (a 4k prefill
peaked 10 GB above the weights on the H100).
"""
import gc

import mlx.core as mx
import pytest

from xlstm_metal import xLSTMRunner


@pytest.mark.parametrize("seq_len, chunk", [(512, 8), (40, 64)])
def test_a_prefill_keeps_only_its_state_and_logits_alive(seq_len, chunk):
    runner = xLSTMRunner.from_spec("xlstm_tiny")
    runner.set_overrides({n: {"chunk_size": chunk} for n in runner.graph.stateful_nodes()})
    mx.eval(runner.model.parameters())
    x = mx.random.randint(0, 500, (1, seq_len))
    mx.eval(x)
    gc.collect()
    before = mx.get_active_memory()
    logits, state = runner(x, logits="last")
    mx.eval(logits, state.arrays())
    gc.collect()
    held = mx.get_active_memory() - before
    expected = logits.nbytes + sum(a.nbytes for a in state.arrays())
    assert held <= expected + 64 * 1024, f"{held} bytes alive after prefill, state + logits are {expected}"
