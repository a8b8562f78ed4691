"""A checkpoint directory stands for its architecture wherever a spec is asked for: ``spec-from-config``,
``plan`` and ``verify`` accept both kinds of directory (config.json only, or our own with wiring_spec.yaml)."""
import json

import pytest
import yaml

from xlstm_metal import build_graph, xLSTMRunner
from xlstm_metal.cli import main

LARGE = {"model_type": "xlstm", "embedding_dim": 32, "num_heads": 2, "num_blocks": 1, "vocab_size": 50,
         "ffn_round_up_to_multiple_of": 16, "chunk_size": 8}


@pytest.fixture(params=["custom-spec", "config-only"])
def checkpoint(request, tmp_path):
    if request.param == "custom-spec":
        runner = xLSTMRunner.from_spec("hybrid_slstm", seed=0)
        runner.save_pretrained(tmp_path / "ckpt")
        assert (tmp_path / "ckpt" / "wiring_spec.yaml").exists()
    else:
        from xlstm_metal.checkpoint import config_to_spec, xLSTMConfig

        runner = xLSTMRunner(build_graph(config_to_spec(xLSTMConfig.from_dict(LARGE))), config=LARGE)
        runner.save_pretrained(tmp_path / "ckpt", config=LARGE)
    return tmp_path / "ckpt", runner


def run(capsys, *args):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_spec_from_config_prints_the_checkpoints_architecture(capsys, checkpoint):
    directory, runner = checkpoint
    for arg in (directory, directory / "config.json"):
        code, out, err = run(capsys, "spec-from-config", arg)
        assert code == 0, err
        graph = build_graph(yaml.safe_load(out))
        assert graph.order == runner.graph.order
        assert graph.num_parameters() == runner.graph.num_parameters()


def test_plan_accepts_a_checkpoint_directory(capsys, checkpoint):
    directory, runner = checkpoint
    code, out, err = run(capsys, "plan", directory, "--seq-len", "16", "--format", "json")
    assert code == 0, err
    assert {step["node"] for step in json.loads(out)["steps"]} == set(runner.graph.compute_nodes())
    code, out, err = run(capsys, "plan", directory, "--seq-len", "16")
    assert code == 0, err
    assert f"parameters: {runner.graph.num_parameters():,}" in out


def test_verify_accepts_a_checkpoint_directory(capsys, checkpoint):
    directory, _ = checkpoint
    code, out, err = run(capsys, "verify", directory, "--seeds", "0", "--seq-len", "9", "--chunk-sizes", "1,4")
    assert code == 0, out + err
    assert "FAIL" not in out
