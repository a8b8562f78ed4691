"""``xlstm-metal serve``: its help works without MLX or the serve extra; without the extra it says what to install."""
from __future__ import annotations

import subprocess
import sys

BLOCK = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, Block())
from xlstm_metal.cli import main
sys.exit(main(sys.argv[1:]))
"""


def run_without(blocked: set[str], *args):
    return subprocess.run([sys.executable, "-c", BLOCK.format(blocked=blocked), *args], capture_output=True,
                          text=True, timeout=120)


def test_serve_help_needs_neither_mlx_nor_the_serve_extra():
    res = run_without({"mlx", "starlette", "uvicorn"}, "serve", "--help")
    assert res.returncode == 0, res.stderr
    text = " ".join(res.stdout.split())
    for option in ["--model", "--host", "--port", "--max-sessions-bytes", "--max-prompt-tokens", "--max-batch", "--max-queue",
                   "--request-timeout", "(default: 8080)"]:
        assert option in text


def test_serve_without_the_extra_names_it_in_one_line():
    res = run_without({"starlette", "uvicorn"}, "serve")
    assert res.returncode == 1, res.stderr  # (as for a missing MLX)
    assert res.stderr.strip().count("\n") == 0 and "xlstm-metal[serve]" in res.stderr
