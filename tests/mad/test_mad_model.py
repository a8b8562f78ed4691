"""A spec becomes a MAD model: vocabulary and width set per setting, and for compression the encoder of
mad-lab's auto-encoder (last position + sinusoidal positions → MLP decoder → every position's token)."""
from dataclasses import replace

import mlx.core as mx
import numpy as np
import pytest

from xlstm_metal.errors import InputError
from xlstm_metal.mad import BASELINES, setting_data
from xlstm_metal.mad.model import MadModel, adapt_spec, sincos_positions
from xlstm_metal.mad.training import cosine_lr, train_run


def test_vocabulary_and_width_follow_the_setting():
    data = adapt_spec("xlstm_mad", 48, 128, False).data
    assert data["dims"]["embedding_dim"] == 128
    assert [n["num_embeddings"] for n in data["nodes"] if n.get("type") == "embedding"] == [48]
    assert [n["vocab_size"] for n in data["nodes"] if n.get("type") == "lm_head"] == [48]
    logits = MadModel("attention_baseline", 48, 32, False)(mx.zeros((2, 9), dtype=mx.int32))
    assert logits.shape == (2, 9, 48)


def test_the_auto_encoder_decodes_every_position_from_the_last():
    model = MadModel("xlstm_mad", 16, 32, True)
    assert "lm_head" not in model.graph.outputs
    x = mx.array(np.random.default_rng(0).integers(0, 16, size=(2, 12)))
    logits = model(x)
    assert logits.shape == (2, 12, 16)
    changed = mx.concatenate([x[:, :1] * 0 + (x[:, :1] + 1) % 16, x[:, 1:]], axis=1)
    assert not np.allclose(np.array(model(changed)), np.array(logits)), "the encoding sees the whole sequence"


def test_sinusoidal_positions_are_mad_labs():
    p = np.array(sincos_positions(5, 8))
    freq = np.exp(np.arange(4) * -(np.log(10000) / 3))
    assert np.allclose(p[:, :4], np.sin(np.arange(5)[:, None] * freq), atol=1e-6)
    assert np.allclose(p[:, 4:], np.cos(np.arange(5)[:, None] * freq), atol=1e-6)


def test_compression_needs_an_lm_head_output(tmp_path):
    spec = adapt_spec("attention_baseline", 16, None, False).data
    spec["outputs"] = ["backbone.out_norm"]
    with pytest.raises(InputError, match="lm_head"):
        adapt_spec(spec, 16, None, True)


def test_cosine_schedule_is_torchs_per_epoch():
    assert cosine_lr(1e-3, 0, 10) == pytest.approx(1e-3)
    assert cosine_lr(1e-3, 5, 10) == pytest.approx((1e-3 + 1e-6) / 2)
    assert cosine_lr(1e-3, 10, 10) == pytest.approx(1e-6)


@pytest.mark.slow
def test_attention_learns_in_context_recall_above_twice_chance():
    setting = replace(BASELINES["in_context_recall"], seq_len=32, num_train_examples=2048, num_test_examples=128)
    train, test = setting_data(setting, None)
    out = train_run("attention_baseline", train, test, vocab_size=16, autoencoder=False, lr=1e-3, weight_decay=0.0,
                    epochs=15, width=64)
    assert out.token_accuracy > 0.25  # chance: 1/8 (15 short epochs reach about 1/3)
