"""An official ``xLSTMLMModelConfig`` dict → spec: block kinds follow ``slstm_at`` for any placement, each sLSTM
block carries its position (the powerlaw forget-bias init) and its FFN, widths follow the official rounding."""
from __future__ import annotations

import json
import math
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from budget import examples
from xlstm_metal.checkpoint.config import ConfigError
from xlstm_metal.checkpoint.files import CheckpointError
from xlstm_metal.checkpoint.import_official import import_official
from xlstm_metal.checkpoint.official_lm import official_lm_spec
from xlstm_metal.graph import build_graph


@st.composite
def configs(draw):
    num_blocks = draw(st.integers(1, 10))
    at = draw(st.one_of(st.just("all"), st.lists(st.integers(0, num_blocks - 1), unique=True, max_size=num_blocks)))
    return {"embedding_dim": draw(st.sampled_from([32, 48, 64])), "vocab_size": 50, "num_blocks": num_blocks,
            "slstm_at": at, "add_post_blocks_norm": draw(st.booleans()),
            "mlstm_block": {"mlstm": {"num_heads": 4, "proj_factor": draw(st.sampled_from([1.5, 2.0]))}},
            "slstm_block": {"slstm": {"num_heads": 4}, "feedforward": {"proj_factor": 1.3}}}


@settings(max_examples=examples(25))
@given(configs())
def test_placement_and_widths_follow_the_config(cfg):
    spec = official_lm_spec(cfg)
    nodes = {n["name"]: n for n in spec["nodes"]}
    at = range(cfg["num_blocks"]) if cfg["slstm_at"] == "all" else cfg["slstm_at"]
    for i in range(cfg["num_blocks"]):
        layer = nodes[f"xlstm_block_stack.blocks.{i}.xlstm"]
        assert layer["type"] == ("slstm_layer" if i in at else "mlstm_layer")
        assert (f"xlstm_block_stack.blocks.{i}.ffn" in nodes) == (i in at)
        if i in at:
            assert (layer["block_idx"], layer["num_blocks"]) == (i, cfg["num_blocks"])
    assert ("xlstm_block_stack.post_blocks_norm" in nodes) == cfg["add_post_blocks_norm"]
    graph = build_graph(spec)
    d = cfg["embedding_dim"]
    for name in nodes:
        if name.endswith(".xlstm") and nodes[name]["type"] == "mlstm_layer":
            inner = math.ceil(cfg["mlstm_block"]["mlstm"]["proj_factor"] * d / 64) * 64
            assert graph.block(name).proj_up.weight.shape == (2 * inner, d)
        if name.endswith(".ffn"):
            assert graph.block(name).proj_up_gate_z.weight.shape == (2 * math.ceil(1.3 * d / 64) * 64, d)


def test_without_an_mlstm_block_every_block_is_slstm():
    spec = official_lm_spec({"vocab_size": 10, "num_blocks": 3, "embedding_dim": 32, "slstm_block": {}})
    assert [n["type"] for n in spec["nodes"] if n["name"].endswith(".xlstm")] == ["slstm_layer"] * 3


def test_import_official_without_torch_says_what_to_install(tmp_path, monkeypatch):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"vocab_size": 10, "num_blocks": 1, "embedding_dim": 32, "mlstm_block": {}}))
    (tmp_path / "model.pt").write_bytes(b"not used")
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(CheckpointError, match="needs torch"):
        import_official(cfg, tmp_path / "model.pt", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_import_official_rejects_a_config_that_is_not_an_lm_config(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text("embedding_dim: 64\nnum_heads: 4\n")
    with pytest.raises(ConfigError, match="not an xLSTMLMModelConfig") as exc:
        import_official(cfg, tmp_path / "model.pt", tmp_path / "out")
    assert str(cfg) in str(exc.value)
