"""``xlstm-metal import-official CONFIG STATE_DICT OUT`` and ``spec-from-config`` on official xLSTMLMModel
checkpoints: the written directory loads and matches the official logits; bad input is one clear line."""
from __future__ import annotations

import json
from dataclasses import asdict

import mlx.core as mx
import numpy as np
import pytest
import torch
import yaml

from xlstm_metal.cli import main
from xlstm_metal.graph import build_graph
from xlstm_metal.runner import xLSTMRunner

from official_lm import build, config, logits


@pytest.fixture(scope="module")
def official():
    return build(config(4, [1], tie=True), seed=7)


@pytest.fixture
def files(official, tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(json.loads(json.dumps(asdict(official.config)))))
    sd = tmp_path / "model.pt"
    torch.save(official.state_dict(), sd)
    return cfg, sd


def test_imported_directory_loads_and_matches(official, files, tmp_path):
    cfg, sd = files
    assert main(["import-official", str(cfg), str(sd), str(tmp_path / "out")]) == 0
    x = np.random.default_rng(0).integers(0, official.config.vocab_size, (1, 21))
    out, _ = xLSTMRunner.from_pretrained(tmp_path / "out")(mx.array(x))
    ref = logits(official, x)
    assert np.abs(np.array(out) - ref).max() <= 1e-4 * np.abs(ref).max()


def test_tied_head_may_be_absent_from_the_state_dict(official, files, tmp_path):
    cfg, sd = files
    state = {k: v for k, v in official.state_dict().items() if k != "lm_head.weight"}
    torch.save({"state_dict": state}, sd)
    assert main(["import-official", str(cfg), str(sd), str(tmp_path / "out")]) == 0
    x = np.arange(9)[None] % official.config.vocab_size
    out, _ = xLSTMRunner.from_pretrained(tmp_path / "out")(mx.array(x))
    assert np.abs(np.array(out) - logits(official, x)).max() <= 1e-4 * np.abs(logits(official, x)).max()


def test_spec_from_config_prints_a_spec_that_builds(files, tmp_path, capsys):
    cfg, sd = files
    main(["import-official", str(cfg), str(sd), str(tmp_path / "out")])
    capsys.readouterr()
    assert main(["spec-from-config", str(tmp_path / "out")]) == 0
    spec = yaml.safe_load(capsys.readouterr().out)
    types = [n["type"] for n in spec["nodes"] if n["name"].endswith(".xlstm")]
    assert types == ["mlstm_layer", "slstm_layer", "mlstm_layer", "mlstm_layer"]
    assert build_graph(spec).num_parameters() > 0


def test_a_missing_tensor_is_named_and_nothing_is_written(official, files, tmp_path, capsys):
    cfg, sd = files
    state = dict(official.state_dict())
    del state["xlstm_block_stack.blocks.1.xlstm.slstm_cell._recurrent_kernel_"]
    torch.save(state, sd)
    assert main(["import-official", str(cfg), str(sd), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "missing" in err and "_recurrent_kernel_" in err and str(sd) in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_a_wrong_shape_is_named(official, files, tmp_path, capsys):
    cfg, sd = files
    state = dict(official.state_dict())
    state["xlstm_block_stack.blocks.0.xlstm.learnable_skip"] = torch.zeros(3)
    torch.save(state, sd)
    assert main(["import-official", str(cfg), str(sd), str(tmp_path / "out")]) == 1
    assert "learnable_skip" in capsys.readouterr().err


def test_an_existing_directory_is_kept_unless_overwrite(files, tmp_path, capsys):
    cfg, sd = files
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep")
    assert main(["import-official", str(cfg), str(sd), str(tmp_path / "out")]) == 1
    assert (tmp_path / "out" / "mine.txt").read_text() == "keep"
    assert main(["import-official", str(cfg), str(sd), str(tmp_path / "out"), "--overwrite"]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["config.json", "model.safetensors"]


@pytest.mark.parametrize("change, field", [
    ({"slstm_at": [9]}, "slstm_at"),
    ({"slstm_block": {"slstm": {"backend": "triton"}}}, "slstm_block.slstm.backend"),
    ({"mlstm_block": {"mlstm": {"num_heads": "four"}}}, "mlstm_block.mlstm.num_heads"),
    ({"slstm_block": {"slstm": {}, "feedforward": {"act_fn": "selu"}}}, "slstm_block.feedforward.act_fn"),
])
def test_bad_config_fields_are_named(files, tmp_path, capsys, change, field):
    cfg, sd = files
    raw = yaml.safe_load(cfg.read_text())
    for key, value in change.items():
        if isinstance(value, dict):
            for sub, val in value.items():
                raw[key][sub] = dict(raw[key].get(sub) or {}, **val)
        else:
            raw[key] = value
    cfg.write_text(yaml.safe_dump(raw))
    assert main(["import-official", str(cfg), str(sd), str(tmp_path / "out")]) != 0
    err = capsys.readouterr().err
    assert f"'{field}'" in err and str(cfg) in err and len(err.strip().splitlines()) == 1
