"""The output head and loss in token chunks, recomputed in the backward: the same loss and gradients as one pass
(any chunk size, targets left out with IGNORE), a lower peak, and chunking on by itself only for large logits."""
import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mlx.utils import tree_flatten

from xlstm_metal import xLSTMRunner
from xlstm_metal.train import TokenBatches, TrainConfig, Trainer
from xlstm_metal.train.data import IGNORE
from xlstm_metal.train.loss import loss_chunk_tokens

VOCAB = 4096
SPEC = {"name": "wide-vocab", "dims": {"d": 32, "vocab": VOCAB},
        "nodes": [{"name": "emb", "type": "embedding", "inputs": ["tokens"], "num_embeddings": "vocab", "dim": "d"},
                  {"name": "norm", "type": "rms_norm", "inputs": ["emb"]},
                  {"name": "mlstm", "type": "mlstm", "inputs": ["norm"], "num_heads": 2, "chunk_size": 8},
                  {"name": "out_norm", "type": "rms_norm", "inputs": ["mlstm"]},
                  {"name": "lm_head", "type": "lm_head", "inputs": ["out_norm"], "vocab_size": "vocab"}],
        "outputs": ["lm_head"]}
DATA = np.random.default_rng(0).integers(0, VOCAB, 20_000).astype(np.int32)


def trainer(tmp_path, loss_chunk, batch=4, seq=32):
    runner = xLSTMRunner.from_spec(SPEC, seed=0)
    cfg = TrainConfig(steps=2, batch_size=batch, seq_len=seq, warmup=1, loss_chunk=loss_chunk)
    return Trainer(runner, TokenBatches(DATA, batch, seq), cfg, tmp_path / f"run{loss_chunk}", progress=False)


def loss_and_grads(t, x, y):
    value, grads = nn.value_and_grad(t.runner.model, t.loss)(t.runner.model, x, y)
    mx.eval(value, grads)
    return float(value), dict(tree_flatten(grads))


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(1)
    x = rng.integers(0, VOCAB, (4, 32)).astype(np.int32)
    y = rng.integers(0, VOCAB, (4, 32)).astype(np.int32)
    y[rng.random(y.shape) < 0.3] = IGNORE
    return mx.array(x), mx.array(y)


@pytest.fixture(scope="module")
def whole(tmp_path_factory, batch):
    t = trainer(tmp_path_factory.mktemp("whole"), 0)
    assert t.loss_chunk == 0
    return loss_and_grads(t, *batch)


@settings(max_examples=6, deadline=None)
@given(chunk=st.sampled_from([1, 5, 32, 48, 127]))
def test_chunked_head_gives_the_loss_and_gradients_of_one_pass(tmp_path_factory, batch, whole, chunk):
    t = trainer(tmp_path_factory.mktemp("chunked"), chunk)
    assert t.loss_chunk == chunk
    loss, grads = loss_and_grads(t, *batch)
    assert loss == pytest.approx(whole[0], rel=1e-5)
    assert grads.keys() == whole[1].keys() and "lm_head.weight" in grads
    for name, g in whole[1].items():
        np.testing.assert_allclose(np.array(grads[name]), np.array(g), rtol=2e-4, atol=1e-7, err_msg=name)


def peak_of_a_step(tmp_path, loss_chunk):
    t = trainer(tmp_path, loss_chunk, batch=8, seq=128)
    x, y = (mx.array(a) for a in t.batches.batch(0))
    mx.eval(t.runner.model.parameters(), x, y)
    mx.reset_peak_memory()
    base = mx.get_active_memory()
    loss_and_grads(t, x, y)
    return mx.get_peak_memory() - base


def test_chunked_head_holds_less_than_the_step_logits(tmp_path):
    logits_bytes = 8 * 128 * VOCAB * 4  # 16 MiB of float32 logits
    whole, chunked = peak_of_a_step(tmp_path, 0), peak_of_a_step(tmp_path, 64)
    assert whole > 2 * logits_bytes
    assert chunked < whole - logits_bytes


def test_chunking_turns_itself_on_only_for_large_logits():
    assert loss_chunk_tokens(None, 8 * 2048, 64) == 0  # MAD size: 4 MB of logits
    chunk = loss_chunk_tokens(None, 8 * 2048, 50304)  # 3.3 GB of logits
    assert 0 < chunk < 8 * 2048 and chunk * 50304 * 4 <= 1 << 28
    assert loss_chunk_tokens(0, 8 * 2048, 50304) == 0
    assert loss_chunk_tokens(100, 64, 50304) == 0  # one chunk would hold the whole step


def test_the_train_command_passes_loss_chunk_to_the_config():
    from xlstm_metal.cli import build_parser

    parse = lambda *extra: build_parser(["train"]).parse_args(["train", "s.yaml", "--data", "d", "--out", "o", *extra])  # noqa
    assert parse().loss_chunk is None and TrainConfig().loss_chunk is None
    assert parse("--loss-chunk", "512").loss_chunk == 512
