"""generate / chat / convert / spec-from-config on a small checkpoint with a real tokenizer."""
import json

import mlx.core as mx
import pytest
import yaml
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from xlstm_metal import State, build_graph, xLSTMRunner
from xlstm_metal.checkpoint import config_to_spec, xLSTMConfig
from xlstm_metal.cli import main

CONFIG = {"embedding_dim": 32, "num_heads": 2, "num_blocks": 2, "vocab_size": 320, "chunk_size": 8,
          "ffn_round_up_to_multiple_of": 16, "eos_token_id": 0}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt") / "model"
    cfg = xLSTMConfig.from_dict(CONFIG)
    mx.random.seed(0)
    runner = xLSTMRunner(build_graph(config_to_spec(cfg)), config=cfg)
    runner.save_pretrained(d, config=dict(CONFIG))
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(["def main():\n    return 42\n"] * 50, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.save(str(d / "tokenizer.json"))
    (d / "tokenizer_config.json").write_text(json.dumps({"eos_token": {"content": "<|endoftext|>"}, "add_bos_token": False}))
    return d


def cli(capsys, *args):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_generate_prints_text_and_speed(capsys, ckpt, tmp_path):
    code, out, err = cli(capsys, "generate", "--model", ckpt, "--prompt", "def main", "--max-tokens", "5",
                         "--state-out", tmp_path / "s.safetensors")
    assert code == 0 and out.startswith("def main")
    assert "prompt tokens" in err and "tok/s" in err and "peak memory" in err
    assert State.load(tmp_path / "s.safetensors").tokens_seen > 0


def test_generate_is_greedy_by_default_and_reproducible_with_a_seed(capsys, ckpt):
    a = cli(capsys, "generate", "--model", ckpt, "--prompt", "def", "--max-tokens", "6", "--quiet")[1]
    b = cli(capsys, "generate", "--model", ckpt, "--prompt", "def", "--max-tokens", "6", "--quiet")[1]
    c = cli(capsys, "generate", "--model", ckpt, "--prompt", "def", "--max-tokens", "6", "--quiet", "--temperature", "1", "--seed", "3")[1]
    d = cli(capsys, "generate", "--model", ckpt, "--prompt", "def", "--max-tokens", "6", "--quiet", "--temperature", "1", "--seed", "3")[1]
    assert a == b and c == d


def test_chat_feeds_only_the_new_turn_and_saves_the_state(capsys, ckpt, tmp_path, monkeypatch):
    lines = iter(["hello", "again", "/exit"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    state_file = tmp_path / "chat.safetensors"
    code, out, _ = cli(capsys, "chat", "--model", ckpt, "--max-tokens", "4", "--state-file", state_file)
    assert code == 0 and out.count("Assistant:") == 2
    seen = State.load(state_file).tokens_seen
    lines = iter(["once more", "/exit"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    _, _, err = cli(capsys, "chat", "--model", ckpt, "--max-tokens", "4", "--state-file", state_file)
    assert f"resumed a conversation of {seen} tokens" in err
    assert State.load(state_file).tokens_seen > seen


def test_convert_quantized_then_generate(capsys, ckpt, tmp_path):
    code, _, err = cli(capsys, "convert", ckpt, tmp_path / "q", "-q", "--q-bits", "8", "--q-group-size", "32")
    assert code == 0 and "wrote" in err
    assert json.loads((tmp_path / "q" / "config.json").read_text())["quantization"]["bits"] == 8
    assert (tmp_path / "q" / "tokenizer.json").exists()
    code, out, _ = cli(capsys, "generate", "--model", tmp_path / "q", "--prompt", "def", "--max-tokens", "3")
    assert code == 0


def test_spec_from_config_prints_a_loadable_spec(capsys, ckpt, tmp_path):
    code, out, _ = cli(capsys, "spec-from-config", ckpt)
    assert code == 0
    spec = yaml.safe_load(out)
    assert spec["dims"]["embedding_dim"] == 32
    g = build_graph(out)
    assert len(g.stateful_nodes()) == 2


def test_bad_model_directory_is_one_line_of_explanation(capsys, tmp_path):
    code, _, err = cli(capsys, "generate", "--model", tmp_path / "nope", "--prompt", "x")
    assert code == 1 and err.startswith("error: no checkpoint directory at") and "Traceback" not in err


def test_the_shipped_default_model_generates_python_offline(capsys):
    code, out, err = cli(capsys, "generate", "--prompt", "def read_file(path):", "--max-tokens", "30")
    assert code == 0
    assert out.startswith("def read_file(path):") and len(out) > 40
    assert "\n" in out[len("def read_file(path):"):]  # it continues the function on new lines
    runner = xLSTMRunner.from_pretrained(__import__("xlstm_metal.cli.generate", fromlist=["x"]).DEFAULT_MODEL)
    assert runner.quantization == {"group_size": 64, "bits": 8, "mode": "affine"}
    assert runner.num_parameters() < 5e6
