"""The shipped default model is the first thing a user sees: `generate` with a `def ` prompt writes a function."""
import ast
import re

import pytest

from xlstm_metal.cli import main
from xlstm_metal.cli.generate import DEFAULT_MODEL

SHIPPED_MAX_BYTES = 10.5e6  # "under ~10 MB on disk": it ships inside the wheel


def first_function(text: str) -> str:
    """``text`` up to its first blank line (where a function ends), without a last line cut off mid-way."""
    block = text.split("\n\n")[0]
    return block if text != block else block.rsplit("\n", 1)[0]


def parses(source: str) -> bool:
    try:
        ast.parse(source)
    except SyntaxError:
        return False
    return True


def test_first_function_is_cut_at_a_blank_line_or_the_last_whole_line():
    assert first_function("def f(x):\n    return x\n\nclass A") == "def f(x):\n    return x"
    assert first_function("def f(x):\n    y = x\n    ret") == "def f(x):\n    y = x"
    assert parses("def f(x):\n    y = x") and not parses("def f(x):\n    '\\x93'  #  0x94 -> LEFT\n  )")


# The model shipped before the retrain (benchmarks/gpu_job.sh default-model) continues `def ` with a codec table.
# Remove this marker once xlstm_metal/default_model holds that phase's output (strict: an unexpected pass fails).
@pytest.mark.xfail(strict=True, reason="the shipped default model predates the retrain on cleaned Python source")
def test_the_default_model_completes_def_with_a_plausible_python_function(capsys):
    assert main(["generate", "--prompt", "def ", "--max-tokens", "120", "--quiet"]) == 0
    function = first_function("def " + capsys.readouterr().out)
    assert re.match(r"def [A-Za-z_]\w*\(.*\)( -> .+)?:\n", function), function
    assert re.search(r"\n(    |\t)\S", function), f"no indented body: {function!r}"
    lines = function.split("\n")
    assert any(parses("\n".join(lines[:k])) for k in range(len(lines), 1, -1)), f"not Python: {function!r}"


def test_the_shipped_model_stays_small_and_quantized():
    from xlstm_metal import xLSTMRunner

    size = sum(f.stat().st_size for f in DEFAULT_MODEL.iterdir() if f.is_file())
    assert size < SHIPPED_MAX_BYTES, f"{DEFAULT_MODEL} is {size / 1e6:.1f} MB"
    assert xLSTMRunner.from_pretrained(DEFAULT_MODEL).quantization["bits"] <= 8
