"""generate / chat / convert / spec-from-config on a small checkpoint with a real tokenizer."""
import json

import mlx.core as mx
import pytest
import yaml
from bpe import byte_level_bpe

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
    tok = byte_level_bpe(["def main():\n    return 42\n"] * 50, special_tokens=["<|endoftext|>"])
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


def test_convert_into_a_directory_with_files_needs_overwrite(capsys, ckpt, tmp_path):
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / "notes.txt").write_text("mine")
    code, _, err = cli(capsys, "convert", ckpt, dst)
    assert code == 1 and err.count("\n") == 1 and "--overwrite" in err and "overwrite=True in Python" in err
    assert (dst / "notes.txt").read_text() == "mine"
    code, _, err = cli(capsys, "convert", ckpt, dst, "--overwrite")
    assert code == 0 and not (dst / "notes.txt").exists() and (dst / "config.json").exists()


def _train(capsys, tmp_path, out, *extra, data=None):
    SPEC = {"name": "cli-train", "dims": {"d": 32, "vocab": 300}, "outputs": ["lm_head"], "nodes": [
        {"name": "backbone.embeddings", "type": "embedding", "inputs": ["tokens"], "num_embeddings": "vocab",
         "dim": "d"},
        {"name": "mlstm", "type": "mlstm", "inputs": ["backbone.embeddings"], "num_heads": 2, "chunk_size": 4},
        {"name": "lm_head", "type": "lm_head", "inputs": ["mlstm"], "vocab_size": "vocab"}]}
    if data is None:
        data = tmp_path / "data.txt"
        data.write_text("def add(a, b):\n    return a + b\n\n" * 100)
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    return cli(capsys, "train", spec, "--data", data, "--out", out, "--steps", "2", "--batch-size", "2",
               "--seq-len", "8", "--warmup", "1", "--save-every", "2", "--eval-every", "2", *extra)


def test_train_never_replaces_a_directory_that_is_no_run_without_overwrite(capsys, tmp_path):
    out = tmp_path / "docs"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    code, _, err = _train(capsys, tmp_path, out)
    assert code == 1 and err.strip().splitlines()[-1].startswith("error: --out") and "--overwrite" in err
    assert "Traceback" not in err and [p.name for p in out.iterdir()] == ["thesis.tex"]
    code, _, err = _train(capsys, tmp_path, out, "--overwrite")
    assert code == 0 and (out / "trainer.json").exists() and not (out / "thesis.tex").exists()


def test_train_says_which_data_files_it_skips_and_refuses_data_without_text(capsys, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "code.py").write_text("def add(a, b):\n    return a + b\n\n" * 100)
    (data / "image.txt").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe" * 50)
    code, _, err = _train(capsys, tmp_path, tmp_path / "run", data=data)
    assert code == 0 and f"skipped 1 file(s) that are not readable text: {data / 'image.txt'}" in err
    (data / "code.py").unlink()
    code, _, err = _train(capsys, tmp_path, tmp_path / "run2", data=data)
    assert code == 1 and err.strip().splitlines()[-1] == "error: --data: none of the 1 file(s) holds readable UTF-8 text"


def test_a_corrupt_tokenizer_is_one_line_naming_the_file(capsys, ckpt, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(ckpt, broken)
    (broken / "tokenizer.json").write_text('{"model": 3')
    code, _, err = cli(capsys, "generate", "--model", broken, "--prompt", "x", "--max-tokens", "1")
    assert code == 1 and err.count("\n") == 1 and f"{broken / 'tokenizer.json'} is not a valid tokenizer" in err
