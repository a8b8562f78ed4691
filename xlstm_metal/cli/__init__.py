"""``xlstm-metal <command>``: each command is a thin function over the library's layers."""
from __future__ import annotations

import argparse
import sys

from . import architecture, checkpoint, generate, mad, train, verify  # noqa: F401  (each registers its commands)
from .registry import COMMANDS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="xlstm-metal", description="Author, run and verify xLSTM models on MLX.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (configure, fn, help) in sorted(COMMANDS.items()):
        p = sub.add_parser(name, help=help, description=help)
        if configure:
            configure(p)
        p.set_defaults(_fn=fn)
    args = parser.parse_args(argv)
    if not getattr(args, "_fn", None):
        parser.print_help()
        return 2
    from ..runtime import NodeExecutionError
    from ..spec import SpecError

    try:
        return int(args._fn(args) or 0)
    except SpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (NodeExecutionError, FileNotFoundError, ValueError, LookupError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0
