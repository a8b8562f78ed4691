"""After ``runner.quantize`` returns, only the packed weights are allocated: the float weights are freed right
away, by reference counting alone (the garbage collector may not run for a long time), whatever ran before."""
from __future__ import annotations

import gc
import weakref

import mlx.core as mx
import pytest
from mlx.utils import tree_flatten

from xlstm_metal import xLSTMRunner

SPEC = {"name": "q", "dims": {"d": 512},
        "inputs": ["tokens"],
        "nodes": [{"name": "emb", "type": "embedding", "inputs": ["tokens"], "num_embeddings": 2048, "dim": "d"},
                  {"name": "norm", "type": "rms_norm", "inputs": ["emb"]},
                  {"name": "cell", "type": "mlstm", "inputs": ["norm"], "num_heads": 2},
                  {"name": "ffn", "type": "swiglu", "inputs": ["cell"]},
                  {"name": "head", "type": "lm_head", "inputs": ["ffn"], "vocab_size": 2048}],
        "outputs": ["head"]}


@pytest.fixture
def no_gc():
    gc.collect()
    gc.disable()
    yield
    gc.enable()


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
@pytest.mark.parametrize("ran", ["nothing", "prefill, decode and stream"])
def test_active_memory_right_after_quantize_is_the_packed_size(no_gc, dtype, ran):
    base = mx.get_active_memory()
    runner = xLSTMRunner.from_spec(SPEC, dtype=dtype, seed=0)
    mx.eval(runner.model.parameters())
    old = weakref.ref(runner.model.cell.proj_in.weight)
    if ran != "nothing":
        logits, state = runner(mx.array([list(range(1, 40))]), logits="last")
        logits, state = runner(mx.array([[3]]), state)
        mx.eval(logits, state.arrays())
        del logits, state
        for response in runner.stream([1, 2, 3], max_tokens=3):
            pass
        del response  # (it holds the state)
    runner.quantize(4)
    packed = sum(v.nbytes for _, v in tree_flatten(runner.model.parameters()))
    assert old() is None  # the float weight is gone, without gc
    assert mx.get_active_memory() - base == pytest.approx(packed, rel=0.05)
