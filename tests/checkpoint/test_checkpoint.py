"""Checkpoint directories: config.json → spec, strict loading, round trips, convert/quantize, and every broken input explained."""
import json

import mlx.core as mx
import numpy as np
import pytest

from xlstm_metal import build_graph, xLSTMRunner
from xlstm_metal.checkpoint import CheckpointError, ConfigError, config_to_spec, xLSTMConfig
from xlstm_metal.checkpoint.save import convert

CONFIG = {"model_type": "xlstm", "embedding_dim": 64, "num_heads": 2, "num_blocks": 2, "vocab_size": 97,
          "qk_dim_factor": 0.5, "v_dim_factor": 1.0, "ffn_proj_factor": 2.667, "ffn_round_up_to_multiple_of": 64,
          "gate_soft_cap": 15.0, "output_logit_soft_cap": 30.0, "norm_eps": 1e-6, "use_bias": False,
          "weight_mode": "single", "chunk_size": 16, "tie_word_embeddings": False, "eos_token_id": 2,
          "bos_token_id": 0, "pad_token_id": 1, "some_future_field": {"ignored": True}}


def make_checkpoint(path, config=CONFIG, seed=0, dtype="float32"):
    cfg = xLSTMConfig.from_dict(config)
    mx.random.seed(seed)
    runner = xLSTMRunner(build_graph(config_to_spec(cfg)), dtype=dtype, config=cfg)
    runner.save_pretrained(path, config=dict(config))
    return runner


X = mx.array(np.random.default_rng(0).integers(0, 97, size=(2, 21)), dtype=mx.int32)


def test_config_becomes_the_7b_spec():
    cfg = xLSTMConfig.from_dict({"embedding_dim": 4096, "num_heads": 8, "num_blocks": 32, "vocab_size": 50304,
                                 "ffn_proj_factor": 2.667})
    from_config = build_graph(config_to_spec(cfg), materialize=False)
    shipped = build_graph("xlstm_7b", materialize=False)
    assert from_config.order == shipped.order
    for n in shipped.compute_nodes():
        assert from_config.node(n)["params"] == shipped.node(n)["params"], n


def test_transformers_aliases_are_accepted_and_unknown_fields_kept():
    cfg = xLSTMConfig.from_dict({"hidden_size": 64, "num_heads": 2, "num_hidden_layers": 3, "vocab_size": 10, "mystery": 1})
    assert (cfg.embedding_dim, cfg.num_blocks) == (64, 3)
    assert cfg.to_dict()["mystery"] == 1


@pytest.mark.parametrize("field, value, named, fragment", [
    ("weight_mode", "triple", "weight_mode", "supported values are 'single' and 'fused'"),
    ("num_heads", 3, "qk_dim_factor", "not a positive multiple of num_heads=3"),
    ("chunk_size", 0, "chunk_size", "positive integer"),
    ("quantization", {"bits": 7, "group_size": 64}, "quantization", "expected {'bits'"),
])
def test_unsupported_config_values_name_the_field(field, value, named, fragment):
    with pytest.raises(ConfigError, match=f"'{named}'") as info:
        xLSTMConfig.from_dict(dict(CONFIG, **{field: value}))
    assert fragment in str(info.value)


def test_missing_required_config_field():
    with pytest.raises(ConfigError, match="lacks required field.*num_blocks"):
        xLSTMConfig.from_dict({k: v for k, v in CONFIG.items() if k != "num_blocks"})


def test_round_trip_gives_identical_logits(tmp_path):
    original = make_checkpoint(tmp_path / "ckpt")
    loaded = xLSTMRunner.from_pretrained(tmp_path / "ckpt")
    a, sa = original(X)
    b, sb = loaded(X)
    np.testing.assert_array_equal(np.array(a), np.array(b))
    assert loaded.eos_token_ids == {2}


def test_sharded_checkpoint_with_index_loads(tmp_path):
    original = make_checkpoint(tmp_path / "one")
    original.save_pretrained(tmp_path / "sharded", config=dict(CONFIG), max_shard_bytes=20_000)
    files = sorted(p.name for p in (tmp_path / "sharded").iterdir())
    assert "model.safetensors.index.json" in files and sum(f.startswith("model-0") for f in files) > 2
    loaded = xLSTMRunner.from_pretrained(tmp_path / "sharded", progress=False)
    np.testing.assert_array_equal(np.array(original(X)[0]), np.array(loaded(X)[0]))


def test_official_package_key_names_are_renamed(tmp_path):
    make_checkpoint(tmp_path / "c")
    w = mx.load(str(tmp_path / "c" / "model.safetensors"))
    w["embedding.weight"] = w.pop("backbone.embeddings.weight")
    mx.save_safetensors(str(tmp_path / "c" / "model.safetensors"), w)
    xLSTMRunner.from_pretrained(tmp_path / "c")


def test_fused_weight_mode_loads_and_matches_single(tmp_path):
    single = make_checkpoint(tmp_path / "s")
    w = {k: v for k, v in mx.load(str(tmp_path / "s" / "model.safetensors")).items()}
    for b in range(2):
        p = f"backbone.blocks.{b}."
        m = p + "mlstm_layer."
        w[m + "qkv_opreact.weight"] = mx.concatenate([w.pop(m + n + ".weight") for n in ("q", "k", "v", "ogate_preact")])
        w[m + "ifgate_preact.weight"] = mx.concatenate([w.pop(m + n + ".weight") for n in ("igate_preact", "fgate_preact")])
        w[m + "ifgate_preact.bias"] = mx.concatenate([w.pop(m + n + ".bias") for n in ("igate_preact", "fgate_preact")])
        w[p + "ffn.proj_up_gate_z.weight"] = mx.concatenate([w.pop(p + "ffn.proj_up_gate.weight"), w.pop(p + "ffn.proj_up.weight")])
    (tmp_path / "f").mkdir()
    mx.save_safetensors(str(tmp_path / "f" / "model.safetensors"), w)
    (tmp_path / "f" / "config.json").write_text(json.dumps(dict(CONFIG, weight_mode="fused")))
    fused = xLSTMRunner.from_pretrained(tmp_path / "f")
    np.testing.assert_allclose(np.array(fused(X)[0]), np.array(single(X)[0]), rtol=1e-5, atol=1e-5)


def test_tied_embeddings_fill_the_lm_head(tmp_path):
    make_checkpoint(tmp_path / "t")
    w = dict(mx.load(str(tmp_path / "t" / "model.safetensors")))
    w.pop("lm_head.weight")
    mx.save_safetensors(str(tmp_path / "t" / "model.safetensors"), w)
    (tmp_path / "t" / "config.json").write_text(json.dumps(dict(CONFIG, tie_word_embeddings=True)))
    r = xLSTMRunner.from_pretrained(tmp_path / "t")
    np.testing.assert_array_equal(np.array(r.model.lm_head.weight), np.array(w["backbone.embeddings.weight"]))


def snapshot(directory):
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


class TestBrokenCheckpointsAreExplainedAndLeftUntouched:
    def check(self, directory, error, fragment):
        before = snapshot(directory)
        with pytest.raises(error) as info:
            xLSTMRunner.from_pretrained(directory)
        assert fragment in str(info.value), str(info.value)
        assert snapshot(directory) == before
        return str(info.value)

    def test_missing_shard(self, tmp_path):
        make_checkpoint(tmp_path / "one").save_pretrained(tmp_path / "c", config=dict(CONFIG), max_shard_bytes=20_000)
        victim = sorted((tmp_path / "c").glob("model-0*"))[1]
        victim.unlink()
        self.check(tmp_path / "c", CheckpointError, f"missing shard(s) listed in model.safetensors.index.json: {victim.name}")

    def test_truncated_shard(self, tmp_path):
        make_checkpoint(tmp_path / "c")
        f = tmp_path / "c" / "model.safetensors"
        f.write_bytes(f.read_bytes()[:-1000])
        self.check(tmp_path / "c", CheckpointError, "model.safetensors is truncated")

    def test_corrupt_header(self, tmp_path):
        make_checkpoint(tmp_path / "c")
        f = tmp_path / "c" / "model.safetensors"
        data = bytearray(f.read_bytes())
        data[8:20] = b"\xff" * 12
        f.write_bytes(bytes(data))
        self.check(tmp_path / "c", CheckpointError, "corrupt header")

    def test_missing_and_unknown_keys_are_listed(self, tmp_path):
        make_checkpoint(tmp_path / "c")
        w = dict(mx.load(str(tmp_path / "c" / "model.safetensors")))
        w.pop("backbone.blocks.1.mlstm_layer.q.weight")
        w["backbone.blocks.1.mlstm_layer.qq.weight"] = mx.zeros((2, 2))
        mx.save_safetensors(str(tmp_path / "c" / "model.safetensors"), w)
        msg = self.check(tmp_path / "c", CheckpointError, "missing tensor(s) (1): backbone.blocks.1.mlstm_layer.q.weight")
        assert "unknown tensor(s) (1): backbone.blocks.1.mlstm_layer.qq.weight" in msg

    def test_shape_mismatch_names_key_expected_and_found(self, tmp_path):
        make_checkpoint(tmp_path / "c")
        w = dict(mx.load(str(tmp_path / "c" / "model.safetensors")))
        w["lm_head.weight"] = mx.zeros((96, 64))
        mx.save_safetensors(str(tmp_path / "c" / "model.safetensors"), w)
        self.check(tmp_path / "c", CheckpointError, "shape mismatch for 'lm_head.weight' in model.safetensors: config.json implies (97, 64), file has (96, 64)")

    def test_unsupported_config_value(self, tmp_path):
        make_checkpoint(tmp_path / "c")
        (tmp_path / "c" / "config.json").write_text(json.dumps(dict(CONFIG, weight_mode="quad")))
        self.check(tmp_path / "c", ConfigError, "'weight_mode'")

    def test_no_weights_at_all(self, tmp_path):
        make_checkpoint(tmp_path / "c")
        (tmp_path / "c" / "model.safetensors").unlink()
        self.check(tmp_path / "c", CheckpointError, "no weights in")


def test_convert_to_bf16_and_quantized_directories_load(tmp_path):
    original = make_checkpoint(tmp_path / "src")
    ref = np.array(original(X)[0])
    convert(tmp_path / "src", tmp_path / "bf16", dtype="bfloat16")
    bf = xLSTMRunner.from_pretrained(tmp_path / "bf16")
    assert bf.dtype == mx.bfloat16
    assert np.abs(np.array(bf(X)[0].astype(mx.float32)) - ref).max() < 0.05 * max(1, np.abs(ref).max())
    convert(tmp_path / "src", tmp_path / "q8", q_bits=8, q_group_size=32)
    cfg = json.loads((tmp_path / "q8" / "config.json").read_text())
    assert cfg["quantization"] == {"group_size": 32, "bits": 8, "mode": "affine"}
    q8 = xLSTMRunner.from_pretrained(tmp_path / "q8")
    assert q8.model.backbone.blocks[0].mlstm_layer.proj_in.__class__.__name__ == "QuantizedLinear"
    assert "backbone.blocks.0.mlstm_layer.q.scales" in mx.load(str(tmp_path / "q8" / "model.safetensors"))
    out = np.array(q8(X)[0])
    assert np.abs(out - ref).max() < 0.05 * max(1, np.abs(ref).max())
    # greedy decoding after the prompt mostly agrees at 8 bits
    assert (out.argmax(-1) == ref.argmax(-1)).mean() > 0.9


def test_convert_refuses_to_clobber_and_leaves_nothing_on_failure(tmp_path):
    make_checkpoint(tmp_path / "src")
    (tmp_path / "dst").mkdir()
    (tmp_path / "dst" / "keep.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="not empty"):
        convert(tmp_path / "src", tmp_path / "dst")
    assert (tmp_path / "dst" / "keep.txt").read_text() == "mine"
    with pytest.raises(ValueError):
        convert(tmp_path / "src", tmp_path / "new", dtype="float8")
    assert not (tmp_path / "new").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".new")]


def test_models_from_custom_specs_save_their_spec(tmp_path):
    r = xLSTMRunner.from_spec("xlstm_parallel_heads", seed=0)
    r.save_pretrained(tmp_path / "p")
    assert (tmp_path / "p" / "wiring_spec.yaml").exists()
    loaded = xLSTMRunner.from_pretrained(tmp_path / "p")
    x = mx.array([[1, 2, 3, 4, 5]])
    np.testing.assert_array_equal(np.array(r(x)[0]), np.array(loaded(x)[0]))
