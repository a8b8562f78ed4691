"""Bad input on the command line is one line naming the option or file, never a traceback; bugs keep theirs.

Also: ``--help`` and ``--version`` without MLX, every option's help and default, the memory check before weights."""
import argparse
import subprocess
import sys

import pytest

from xlstm_metal import __version__
from xlstm_metal.cli import build_parser, main
from xlstm_metal.cli.registry import COMMANDS


def cli(capsys, *args):
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:  # argparse
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_one_line(err: str):
    assert err.count("\n") == 1 and "Traceback" not in err, err


BAD_VALUES = [
    ("train", "--steps", "0"), ("train", "--lr", "0"), ("train", "--lr", "-1e-3"), ("train", "--lr", "nan"),
    ("train", "--save-every", "0"), ("train", "--seed", "-1"), ("train", "--seq-len", "1000000000000"),
    ("train", "--batch-size", "10**12"), ("train", "--eval-every", "0"), ("train", "--warmup", "-5"),
    ("run", "--max-tokens", "-1"), ("run", "--seed", "-1"), ("run", "--tokens", "1,-2"), ("run", "--tokens", "a,b"),
    ("generate", "--max-tokens", "-1"), ("generate", "--temperature", "-1"), ("generate", "--top-p", "0"),
    ("generate", "--top-p", "1.5"), ("generate", "--top-k", "-1"), ("generate", "--min-p", "1"),
    ("generate", "--repetition-penalty", "0"), ("verify", "--seq-len", "0"), ("verify", "--chunk-sizes", "0,4"),
    ("verify", "--rtol", "-1"), ("plan", "--seq-len", "0"), ("mad", "--epochs", "0"), ("mad", "--budget", "0"),
]


@pytest.mark.parametrize("command,option,value", BAD_VALUES)
def test_a_bad_number_is_one_line_naming_the_option(capsys, tmp_path, command, option, value):
    extra = {"train": ["xlstm_tiny", "--data", str(tmp_path), "--out", str(tmp_path / "o")], "run": ["xlstm_tiny"],
             "verify": ["xlstm_tiny"], "plan": ["xlstm_tiny"], "mad": ["xlstm_tiny"], "generate": []}[command]
    code, out, err = cli(capsys, command, *extra, f"{option}={value}")
    assert code == 2
    assert_one_line(err)
    assert f"argument {option}" in err and f"xlstm-metal {command}: error:" in err
    assert not (tmp_path / "o").exists()


def test_train_config_refuses_what_the_cli_refuses():
    from xlstm_metal.train import TrainConfig
    from xlstm_metal.train.config import TrainConfigError

    for field, value in [("steps", 0), ("lr", 0.0), ("lr", float("nan")), ("save_every", 0), ("seed", -1),
                         ("warmup", -1), ("batch_size", 2.5), ("grad_clip", -1.0)]:
        with pytest.raises(TrainConfigError, match=f"TrainConfig.{field} must be"):
            TrainConfig(**{field: value})


def test_the_warmup_default_scales_with_the_steps():
    from xlstm_metal.train import TrainConfig

    assert [TrainConfig(steps=s).warmup for s in (5, 20, 1000, 100_000)] == [1, 2, 100, 1000]
    assert TrainConfig(steps=20, warmup=7).warmup == 7


def test_an_input_error_is_one_line_and_debug_shows_the_traceback(capsys, tmp_path):
    code, _, err = cli(capsys, "generate", "--spec", "xlstm_tiny", "--prompt", "hello")
    assert code == 1 and err.startswith("error: --prompt: this model has no tokenizer.json")
    assert_one_line(err)
    from xlstm_metal.errors import InputError

    with pytest.raises(InputError, match="no tokenizer.json"):
        main(["--debug", "generate", "--spec", "xlstm_tiny", "--prompt", "hello"])


def test_an_unexpected_error_keeps_its_traceback(monkeypatch):
    def broken(args):
        raise KeyError("a bug of ours")

    configure, _, help = COMMANDS["specs"]
    monkeypatch.setitem(COMMANDS, "specs", (configure, broken, help))
    with pytest.raises(KeyError, match="a bug of ours"):
        main(["specs"])


def test_running_out_of_memory_is_one_line(capsys, monkeypatch):
    def greedy(args):
        raise MemoryError()

    configure, _, help = COMMANDS["specs"]
    monkeypatch.setitem(COMMANDS, "specs", (configure, greedy, help))
    code, _, err = cli(capsys, "specs")
    assert code == 1 and err.startswith("error: out of memory")
    assert_one_line(err)


@pytest.mark.parametrize("command", [["run", "xlstm_7b"], ["verify", "xlstm_7b"], ["generate", "--spec", "xlstm_7b"]])
def test_weights_larger_than_the_memory_are_refused_before_any_is_built(capsys, monkeypatch, command):
    import xlstm_metal.memory as memory

    monkeypatch.setattr(memory, "available_memory", lambda: 8 * 10 ** 9)
    code, _, err = cli(capsys, *command)
    assert code == 2 and "the parameters need 25.6 GiB in float32, more than the 7.5 GiB of memory" in err
    assert "--dtype bfloat16" in err
    assert_one_line(err)


def test_verify_takes_a_dtype(capsys):
    code, out, _ = cli(capsys, "verify", "xlstm_tiny", "--dtype", "bfloat16", "--seeds", "0", "--chunk-sizes", "4")
    assert code == 0 and "PASSED" in out and "5e-02" in out


def test_an_impossible_spec_size_is_one_line_not_a_crash(tmp_path):
    spec = tmp_path / "huge.yaml"
    spec.write_text("name: huge\nnodes:\n  - {name: emb, type: embedding, inputs: [tokens], num_embeddings: 2000000000,"
                    " dim: 64}\n  - {name: head, type: lm_head, inputs: [emb], vocab_size: 2000000000}\n"
                    "outputs: [head]\n")
    res = subprocess.run([sys.executable, "-m", "xlstm_metal.cli", "run", str(spec)], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 2 and "node 'emb', field 'num_embeddings'" in res.stderr
    assert "the parameters need 953.7 GiB in float32" in res.stderr
    assert_one_line(res.stderr)


# ---------------------------------------------------------------------- help and version
def test_version(capsys):
    code, out, _ = cli(capsys, "--version")
    assert code == 0 and out.startswith(f"xlstm-metal {__version__} (mlx ")


def subcommand_parsers():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [parser, *sub.choices.values()]


def test_every_option_of_every_command_says_what_it_means():
    assert len(subcommand_parsers()) == len(COMMANDS) + 1
    for p in subcommand_parsers():
        for action in p._actions:
            if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                assert action.help and len(action.help) > 8, f"{p.prog} {action.option_strings or action.dest}"


def test_help_shows_defaults(capsys):
    for command, shown in [("train", ["(default: 1000)", "(default: 0.003; with --from: 0.0001)", "a tenth of --steps"]),
                           ("generate", ["(default: 100)", "0: greedy"]), ("verify", ["(default: float32)"])]:
        code, out, _ = cli(capsys, command, "--help")
        assert code == 0
        text = " ".join(out.split())
        for s in shown:
            assert s in text, (command, s)


# ---------------------------------------------------------------------- without MLX
NO_MLX = """
import sys
class NoMLX:
    def find_spec(self, name, path=None, target=None):
        if name == "mlx" or name.startswith("mlx."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, NoMLX())
from xlstm_metal.cli import main
sys.exit(main(sys.argv[1:]))
"""


def without_mlx(*args):
    return subprocess.run([sys.executable, "-c", NO_MLX, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args", [["--help"], ["train", "--help"], ["generate", "--help"], ["chat", "--help"],
                                  ["verify", "--help"], ["run", "--help"], ["convert", "--help"], ["mad", "--help"]])
def test_help_works_without_mlx(args):
    res = without_mlx(*args)
    assert res.returncode == 0 and "usage: xlstm-metal" in res.stdout, res.stderr


def test_version_without_mlx_says_so():
    res = without_mlx("--version")
    assert res.returncode == 0 and "mlx not installed" in res.stdout


@pytest.mark.parametrize("args", [["run", "xlstm_tiny"], ["generate", "--prompt", "x"], ["mad", "xlstm_mad"],
                                  ["verify", "xlstm_tiny"]])
def test_a_command_that_needs_mlx_names_the_extra_to_install(args):
    res = without_mlx(*args)
    assert res.returncode == 1, res.stderr
    assert "needs MLX, which is not installed: pip install 'xlstm-metal[cpu]'" in res.stderr
    assert "'xlstm-metal[cuda]'" in res.stderr
    assert_one_line(res.stderr)


def test_a_checkpoint_larger_than_the_memory_is_refused_before_reading(capsys, monkeypatch):
    import xlstm_metal.memory as memory

    monkeypatch.setattr(memory, "available_memory", lambda: 10 ** 6)
    code, _, err = cli(capsys, "generate", "--prompt", "def")  # the shipped model: quantized weights, millions of parameters
    assert code == 1 and "'xlstm-small-code' needs" in err and "fewer bits (xlstm-metal convert -q --q-bits 4)" in err
    assert_one_line(err)
