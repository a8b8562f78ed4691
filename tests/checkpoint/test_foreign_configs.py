"""config.json as other software writes it: explicit null soft caps, transformers >= 5's ``dtype``."""
import json

import mlx.core as mx
import numpy as np
import pytest

from xlstm_metal import build_graph, xLSTMRunner
from xlstm_metal.checkpoint import config_to_spec, xLSTMConfig
from xlstm_metal.checkpoint.save import convert

CONFIG = {"model_type": "xlstm", "embedding_dim": 32, "num_heads": 2, "num_blocks": 2, "vocab_size": 61,
          "ffn_round_up_to_multiple_of": 16, "chunk_size": 8, "eos_token_id": 2}
TOKENS = mx.array(np.random.default_rng(1).integers(0, 61, size=(1, 13)), dtype=mx.int32)


def saved(path, config, dtype="float32"):
    cfg = xLSTMConfig.from_dict(config)
    mx.random.seed(0)
    runner = xLSTMRunner(build_graph(config_to_spec(cfg)), dtype=dtype, config=cfg)
    runner.save_pretrained(path, config=dict(config))
    return runner


def test_null_soft_caps_mean_no_cap_in_config_spec_and_blocks():
    cfg = xLSTMConfig.from_dict(dict(CONFIG, gate_soft_cap=None, output_logit_soft_cap=None))
    assert (cfg.gate_soft_cap, cfg.output_logit_soft_cap) == (None, None)
    graph = build_graph(config_to_spec(cfg))
    assert graph.block("lm_head").params.soft_cap is None
    assert all(graph.block(f"backbone.blocks.{i}.mlstm_layer").params.gate_soft_cap is None for i in range(2))


def test_absent_soft_caps_keep_the_official_defaults():
    cfg = xLSTMConfig.from_dict(CONFIG)
    assert (cfg.gate_soft_cap, cfg.output_logit_soft_cap) == (15.0, 30.0)


def test_null_logit_cap_survives_a_save_and_load(tmp_path):
    ours = saved(tmp_path / "m", dict(CONFIG, gate_soft_cap=None, output_logit_soft_cap=None))
    loaded = xLSTMRunner.from_pretrained(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text())["output_logit_soft_cap"] is None
    assert loaded.graph.block("lm_head").params.soft_cap is None
    np.testing.assert_allclose(np.array(loaded(TOKENS)[0]), np.array(ours(TOKENS)[0]), atol=1e-5)


def test_uncapped_logits_exceed_the_cap(tmp_path):
    """The lm_head really applies no cap: scaled-up head weights give logits beyond 30."""
    saved(tmp_path / "m", dict(CONFIG, output_logit_soft_cap=None))
    loaded = xLSTMRunner.from_pretrained(tmp_path / "m")
    w = loaded.graph.block("lm_head").weight
    loaded.graph.block("lm_head").weight = w * 1000.0
    assert float(mx.abs(loaded(TOKENS)[0]).max()) > 30.0


@pytest.mark.parametrize("key", ["dtype", "torch_dtype"])
def test_bfloat16_checkpoint_loads_as_bfloat16_whichever_dtype_key(tmp_path, key):
    saved(tmp_path / "m", CONFIG, dtype="bfloat16")
    cfg_path = tmp_path / "m" / "config.json"
    raw = json.loads(cfg_path.read_text())
    raw.pop("torch_dtype", None), raw.pop("dtype", None)
    cfg_path.write_text(json.dumps(dict(raw, **{key: "bfloat16"})))
    assert xLSTMRunner.from_pretrained(tmp_path / "m").dtype == mx.bfloat16


def test_convert_keeps_the_size_of_a_transformers5_bfloat16_checkpoint(tmp_path):
    saved(tmp_path / "m", CONFIG, dtype="bfloat16")
    cfg_path = tmp_path / "m" / "config.json"
    raw = json.loads(cfg_path.read_text())
    raw.pop("torch_dtype", None)
    cfg_path.write_text(json.dumps(dict(raw, dtype="bfloat16")))
    convert(tmp_path / "m", tmp_path / "c")
    size = lambda d: sum(f.stat().st_size for f in d.glob("*.safetensors"))  # noqa: E731
    assert size(tmp_path / "c") <= size(tmp_path / "m") * 1.01


@pytest.mark.parametrize("fields, has_norm, has_bias", [
    (dict(use_bias=True), True, True), (dict(add_out_norm=False), False, False),
    (dict(use_bias=True, transformers_version="5.0.0"), True, False),
    (dict(add_out_norm=False, transformers_version="5.0.0"), True, False),
])
def test_the_final_norm_follows_the_writer_of_the_checkpoint(fields, has_norm, has_bias):
    """The official package: out_norm iff add_out_norm, with a bias iff use_bias. transformers' xLSTMModel
    (tests/reference/test_transformers_parity.py runs it): always an out_norm, never a bias."""
    graph = build_graph(config_to_spec(xLSTMConfig.from_dict(dict(CONFIG, **fields))))
    assert ("backbone.out_norm" in graph.compute_nodes()) == has_norm
    if has_norm:
        assert ("bias" in graph.block("backbone.out_norm").parameters()) == has_bias
