"""A quantized model's long prefill multiplies by each layer's weights dequantized to the compute dtype (the plan
decides from how many tokens), one layer at a time; decoding keeps MLX's quantized matmuls. Both paths agree."""
from __future__ import annotations

import time

import mlx.core as mx
import pytest
import yaml
from mlx.utils import tree_flatten

import xlstm_metal.kernels.quantized as quantized_module
from xlstm_metal import xLSTMRunner
from xlstm_metal.kernels import current_device
from xlstm_metal.spec import shipped_spec_path


def small_7b(blocks: int = 4) -> dict:
    doc = yaml.safe_load(open(shipped_spec_path("xlstm_7b")))
    doc["dims"].update(embedding_dim=256, num_heads=2, num_blocks=blocks, vocab_size=512)
    return doc


@pytest.fixture(scope="module")
def quantized():
    runner = xLSTMRunner.from_spec(small_7b(), seed=0)
    return runner.quantize(4)


def test_the_plan_dequantizes_from_its_threshold_and_never_for_one_token(quantized):
    first = quantized_module.dequantize_min_tokens(current_device())
    if first is None:  # (Metal: MLX's quantized kernels are kept)
        assert not quantized.plan(4096).dequantize
        return
    assert quantized.plan(max(first, 2)).dequantize and not quantized.plan(1).dequantize
    assert first == 1 or not quantized.plan(first - 1).dequantize
    assert "dequantized" in str(quantized.plan(max(first, 2)))
    assert not xLSTMRunner.from_spec(small_7b(1), seed=0).plan(64).dequantize  # float weights: nothing to do


def prefill_logits(runner, tokens):
    logits, state = runner(tokens)
    mx.eval(logits, state.arrays())
    return logits, state


def test_dequantized_prefill_matches_the_quantized_matmuls(quantized, monkeypatch):
    tokens = mx.random.randint(0, 512, (2, 80), key=mx.random.key(1))
    monkeypatch.setattr(quantized_module, "dequantize_min_tokens", lambda device: 2)
    quantized._plans.clear()
    assert quantized.plan(80).dequantize
    fast, fast_state = prefill_logits(quantized, tokens)
    monkeypatch.setattr(quantized_module, "dequantize_min_tokens", lambda device: None)
    quantized._plans.clear()
    assert not quantized.plan(80).dequantize
    slow, slow_state = prefill_logits(quantized, tokens)
    quantized._plans.clear()
    scale = float(mx.max(mx.abs(slow)))
    assert float(mx.max(mx.abs(fast - slow))) <= 1e-4 * scale
    for a, b in zip(fast_state.arrays(), slow_state.arrays()):
        assert mx.allclose(a, b, rtol=1e-3, atol=1e-4)


def test_a_long_prefill_holds_about_one_layers_float_weights_at_a_time():
    runner = xLSTMRunner.from_spec(small_7b(blocks=12), seed=0)
    mx.eval(runner.model.parameters())
    floats = sum(v.nbytes for _, v in tree_flatten(runner.model.parameters()))
    runner.quantize(4)
    base = mx.get_active_memory()
    mx.reset_peak_memory()
    prefill_logits(runner, mx.random.randint(0, 512, (1, 256)))
    assert runner.plan(256).dequantize
    assert mx.get_peak_memory() - base < floats / 3  # all twelve layers dequantized at once would be ~floats


@pytest.mark.slow  # a timing: run alone in the slow tier, not beside other tests
@pytest.mark.skipif(current_device() != "cpu", reason="the CPU's quantized matmul is the slow one measured here")
def test_on_the_cpu_the_dequantized_prefill_is_faster(quantized, monkeypatch):
    tokens = mx.random.randint(0, 512, (1, 128))

    def best():
        prefill_logits(quantized, tokens)
        times = []
        for _ in range(3):
            t = time.perf_counter()
            prefill_logits(quantized, tokens)
            times.append(time.perf_counter() - t)
        return min(times)

    fast = best()
    monkeypatch.setitem(quantized_module.DEQUANTIZE_MIN_TOKENS, "cpu", None)
    quantized._plans.clear()
    slow = best()
    quantized._plans.clear()
    assert fast < slow, (fast, slow)  # (with a fast BLAS about 10x; with the bundled reference BLAS about 1.2x)
