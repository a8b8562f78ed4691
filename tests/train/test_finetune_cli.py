"""`xlstm-metal train --from`: fine-tuning a checkpoint (fully, or LoRA on the quantized shipped model), the progress
and final lines, adapters applied unfused by `generate --adapters` and merged by `convert --fuse-adapters`."""
import json
import re
from pathlib import Path

import pytest
from test_training import cli_run_inputs

from xlstm_metal import xLSTMRunner
from xlstm_metal.cli import main

SHIPPED = "xlstm_metal/default_model"
PROGRESS = re.compile(r"^step (\d+)/(\d+) loss \d+\.\d{3}( val \d+\.\d{3})? lr \d\.\de[-+]\d\d [\d,]+ tok/s "
                      r"peak \d+\.\d (KB|MB|GB) ETA (\d+:)?\d+:\d\d$")
TEMPLATE = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}" \
           "{% if add_generation_prompt %}[assistant]{% endif %}"


def run(capsys, *args):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def text_jsonl(path, n=40):
    path.write_text("".join(json.dumps({"text": f"def f{i}(a, b):\n    return a + b * {i}\n"}) + "\n"
                            for i in range(n)))
    return path


def test_a_quantized_checkpoint_is_not_trained_fully_the_error_points_to_lora(tmp_path, capsys):
    code, _, err = run(capsys, "train", "--from", SHIPPED, "--data", text_jsonl(tmp_path / "d.jsonl"),
                       "--out", tmp_path / "out", "--steps", "1")
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert re.search(r"is quantized \(\d-bit\): its weights cannot be trained directly; train LoRA adapters on it "
                     r"\(--lora-rank 8\)", err) and "--dequantize" in err and not (tmp_path / "out").exists()
    code, _, _ = run(capsys, "convert", SHIPPED, tmp_path / "f32", "--dequantize")  # the other way it names
    assert code == 0 and "quantization" not in json.loads((tmp_path / "f32" / "config.json").read_text())
    import mlx.core as mx
    import numpy as np

    x = mx.array([[5, 17, 300, 42, 7]])
    np.testing.assert_allclose(np.array(xLSTMRunner.from_pretrained(tmp_path / "f32")(x)[0]),
                               np.array(xLSTMRunner.from_pretrained(SHIPPED)(x)[0]), atol=1e-4, rtol=1e-4)
    code, _, err = run(capsys, "train", "--from", tmp_path / "f32", "--data", tmp_path / "d.jsonl", "--out",
                       tmp_path / "out", "--steps", "1", "--batch-size", "1", "--seq-len", "16")
    assert code == 0, err


@pytest.mark.parametrize("args, message", [
    (["--lora-rank", "2", "--lora-targets", "q,query"], "--lora-targets: unknown projection(s) query; valid: "
                                                        "fgate_preact, igate_preact, k, ogate_preact, out_proj, "),
    (["--lora-scale", "2"], "--lora-scale needs --lora-rank"),
    (["--lora-rank", "2", "--lora-layers", "5"], "--lora-layers 5: the model has 4 blocks"),
])
def test_lora_options_that_do_not_fit_are_one_line(tmp_path, capsys, args, message):
    code, _, err = run(capsys, "train", "--from", SHIPPED, "--data", text_jsonl(tmp_path / "d.jsonl"),
                       "--out", tmp_path / "out", "--steps", "1", *args)
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1, err


def test_a_bad_jsonl_line_stops_the_run_with_file_line_and_field(tmp_path, capsys):
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "a"}\n{"messages": [{"role": "user"}]}\n')
    code, _, err = run(capsys, "train", "--from", SHIPPED, "--data", data, "--out", tmp_path / "out",
                       "--lora-rank", "2")
    assert code == 1 and err.strip() == f"error: {data}:2: field 'messages[0].content' must be a string"


def test_lora_on_the_shipped_model_from_the_command_line_then_generate_and_fuse(tmp_path, capsys):
    out = tmp_path / "adapters"
    code, _, err = run(capsys, "train", "--from", SHIPPED, "--data", text_jsonl(tmp_path / "d.jsonl"), "--out", out,
                       "--lora-rank", "4", "--lora-layers", "2", "--lora-targets", "q,v,proj_down", "--steps", "4",
                       "--batch-size", "2", "--seq-len", "32", "--lr", "1e-3", "--eval-every", "2")
    assert code == 0, err
    lines = err.strip().splitlines()
    progress = [line for line in lines if line.startswith("step ")]
    assert progress and all(PROGRESS.match(line) for line in progress), progress
    assert progress[-1].startswith("step 4/4") and progress[-1].endswith("ETA 0:00")
    assert lines[-1].startswith("done: step 4, loss ") and f"wrote {out / 'adapters.safetensors'} (" in lines[-1] \
        and f"--model {SHIPPED} --adapters {out}`" in lines[-1] and f"--fuse-adapters {out}`" in lines[-1]
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["num_layers"] == 2 and config["lora_parameters"]["keys"] == ["q", "v", "proj_down"]
    assert config["lora_parameters"]["rank"] == 4 and config["model"] == str(Path(SHIPPED).resolve())

    gen = ["generate", "--prompt", "def f3(a, b):", "--max-tokens", "12", "--quiet"]
    code, unfused, _ = run(capsys, *gen, "--model", SHIPPED, "--adapters", out)
    assert code == 0 and run(capsys, *gen, "--adapters", out)[1] == unfused  # the base adapter_config.json names
    code, base, _ = run(capsys, *gen, "--model", SHIPPED)
    code, _, err = run(capsys, "convert", SHIPPED, tmp_path / "fused", "--fuse-adapters", out)
    assert code == 0 and f"with the adapters of {out} merged" in err
    assert xLSTMRunner.from_pretrained(tmp_path / "fused").quantization["bits"] == 8  # re-quantized like the base
    code, _, _ = run(capsys, "convert", SHIPPED, tmp_path / "fused-f32", "--fuse-adapters", out, "--dequantize")
    code, fused, _ = run(capsys, *gen, "--model", tmp_path / "fused-f32")
    assert fused == unfused != base


def test_from_a_run_continues_its_weights_and_carries_its_tokenizer_and_chat_template(tmp_path, capsys):
    spec, data = cli_run_inputs(tmp_path)
    common = ["--batch-size", "2", "--seq-len", "16", "--save-every", "20", "--eval-every", "20"]
    assert run(capsys, "train", spec, "--data", data, "--out", tmp_path / "first", "--steps", "20", *common)[0] == 0
    (tmp_path / "first" / "chat_template.jinja").write_text(TEMPLATE)
    chat = tmp_path / "chat.jsonl"
    chat.write_text("".join(json.dumps({"messages": [{"role": "user", "content": "add"},
                                                     {"role": "assistant", "content": "def add(a, b):"}]}) + "\n"
                            for _ in range(30)))
    code, _, err = run(capsys, "train", "--from", tmp_path / "first", "--data", chat, data, "--out",
                       tmp_path / "second", "--steps", "2", *common)
    assert code == 0, err
    assert "M carry loss" in err  # the user turns of the chat lines do not
    assert err.strip().splitlines()[-1].startswith("done: step 2") and f"wrote {tmp_path / 'second'}: weights (" in err
    first, second = (json.loads((tmp_path / d / "trainer.json").read_text())["log"]["losses"]
                     for d in ("first", "second"))
    assert second[0] < 0.7 * first[0]  # it starts from the trained weights, not from scratch
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "wiring_spec.yaml"):
        assert (tmp_path / "second" / name).is_file(), name
    runner = xLSTMRunner.from_pretrained(tmp_path / "second")
    assert runner.tokenizer.chat_template == TEMPLATE and runner.generate("def", max_tokens=3) is not None


def large_layout_checkpoint(d):
    """A tiny checkpoint in the xLSTM-7b layout (config.json of xLSTMLarge, no wiring spec) with a tokenizer."""
    import mlx.core as mx
    from bpe import byte_level_bpe

    from xlstm_metal import build_graph
    from xlstm_metal.checkpoint import config_to_spec, xLSTMConfig

    config = {"embedding_dim": 32, "num_heads": 2, "num_blocks": 2, "vocab_size": 320, "chunk_size": 8,
              "ffn_round_up_to_multiple_of": 16, "eos_token_id": 0, "torch_dtype": "bfloat16"}
    mx.random.seed(0)
    cfg = xLSTMConfig.from_dict(config)
    xLSTMRunner(build_graph(config_to_spec(cfg)), config=cfg, dtype="bfloat16").save_pretrained(d, config=config)
    tok = byte_level_bpe(["def f(a, b):\n    return a + b\n"] * 50, special_tokens=["<|endoftext|>"])
    tok.save(str(d / "tokenizer.json"))
    return d


@pytest.mark.parametrize("lora", [False, True])
def test_from_a_7b_layout_directory_keeps_its_layout_and_dtype(tmp_path, capsys, lora):
    base = large_layout_checkpoint(tmp_path / "large")
    extra = ["--lora-rank", "2", "--lora-layers", "all"] if lora else []
    code, _, err = run(capsys, "train", "--from", base, "--data", text_jsonl(tmp_path / "d.jsonl"), "--out",
                       tmp_path / "out", "--steps", "2", "--batch-size", "2", "--seq-len", "16", *extra)
    assert code == 0, err
    if lora:
        code, _, _ = run(capsys, "convert", base, tmp_path / "fused", "--fuse-adapters", tmp_path / "out")
    out = tmp_path / ("fused" if lora else "out")
    assert not (out / "wiring_spec.yaml").exists() and (out / "tokenizer.json").is_file()
    config = json.loads((out / "config.json").read_text())
    assert config["num_blocks"] == 2 and config["torch_dtype"] == "bfloat16"
    assert xLSTMRunner.from_pretrained(out).generate("def", max_tokens=2) is not None


def test_a_data_directory_in_mlx_lm_layout_holds_out_valid_jsonl(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    text_jsonl(data / "train.jsonl")
    text_jsonl(data / "valid.jsonl", n=5)
    (data / "test.jsonl").write_text("not even json\n")  # left out, as mlx-lm leaves it to its test step
    code, _, err = run(capsys, "train", "--from", SHIPPED, "--data", data, "--out", tmp_path / "out", "--lora-rank",
                       "2", "--lora-alpha", "8", "--steps", "2", "--batch-size", "1", "--seq-len", "16",
                       "--log-every", "1")
    assert code == 0, err
    assert json.loads((tmp_path / "out" / "adapter_config.json").read_text())["lora_parameters"]["scale"] == 4.0
    from xlstm_metal.generation.tokenizer import TokenizerWrapper

    tok = TokenizerWrapper.from_dir(SHIPPED)
    held = sum(len(tok.encode(json.loads(line)["text"])) + 1
               for line in (data / "valid.jsonl").read_text().splitlines())
    assert "40 records, " in err and f"({held} held out)" in err
    assert [line.split()[1] for line in err.splitlines() if line.startswith("step ")] == ["1/2", "2/2"]


def test_serve_applies_adapters_like_generate(tmp_path, monkeypatch):
    import mlx.core as mx
    import numpy as np

    pytest.importorskip("starlette")
    from xlstm_metal.cli import build_parser
    from xlstm_metal.cli.serve import build_app
    from xlstm_metal.serve import app as serve_app
    from xlstm_metal.train import LoRAConfig, apply_lora, load_adapters, save_adapters

    runner = xLSTMRunner.from_pretrained(SHIPPED)
    apply_lora(runner.model, runner.graph, LoRAConfig(rank=2, num_layers=1))
    from mlx.utils import tree_flatten, tree_unflatten

    mx.random.seed(1)
    runner.model.update(tree_unflatten([(k, mx.random.normal(v.shape) * 0.1)
                                        for k, v in tree_flatten(runner.model.trainable_parameters())]))
    save_adapters(tmp_path / "ad", runner.model, LoRAConfig(rank=2, num_layers=1), SHIPPED)
    engines = []
    monkeypatch.setattr(serve_app, "create_app", lambda engine, **kw: engines.append(engine))
    build_app(build_parser(["serve"]).parse_args(["serve", "--model", str(SHIPPED), "--max-tokens", "8",
                                                  "--adapters", str(tmp_path / "ad")]))
    want = xLSTMRunner.from_pretrained(SHIPPED)
    load_adapters(want, tmp_path / "ad")
    x = mx.array([[5, 17, 300, 42]])
    np.testing.assert_array_equal(np.array(engines[0].runner(x)[0]), np.array(want(x)[0]))
    assert not np.array_equal(np.array(xLSTMRunner.from_pretrained(SHIPPED)(x)[0]), np.array(want(x)[0]))
