"""``xlstm-metal <command>``: each command is a thin function over the library's layers.

Bad input ends in one line naming the file or option (exit 2), never a traceback (``--debug`` shows one); an
unexpected failure keeps its traceback. Parsing needs no MLX: ``--help`` and ``--version`` work before it is installed.
"""
from __future__ import annotations

import argparse
import os
import sys

from .. import __version__, fast_blas
from . import architecture, checkpoint, evaluate, generate, mad, official, serve, train, verify  # noqa: F401  (each registers its commands)
from .failures import missing_mlx, mlx_hint, user_failure
from .registry import COMMANDS


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" where there is a default to show and the help text does not already say it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in text:
            return text
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """Help shows every option's meaning and default; a bad value is one line (not usage + message)."""

    def __init__(self, *args, **kw):
        kw.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kw)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _version() -> str:
    """The package's version and the installed MLX's (found and read from its metadata: nothing is imported)."""
    from importlib.metadata import PackageNotFoundError, version
    from importlib.util import find_spec

    try:
        backend = f"mlx {version('mlx')}" if find_spec("mlx") else "mlx not installed"
    except (ImportError, PackageNotFoundError):
        backend = "mlx not installed"
    return f"xlstm-metal {__version__} ({backend})"


def build_parser(only: list[str] | None = None) -> Parser:
    """The parser; ``only``: configure just these commands' options (the others stay bare: imports stay few)."""
    parser = Parser(prog="xlstm-metal", description="Author, run and verify xLSTM models on MLX.")
    parser.add_argument("--version", action="version", version=_version(), help="print the version and exit")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error, not one line")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name, (configure, fn, help) in sorted(COMMANDS.items()):
        p = sub.add_parser(name, help=help, description=help)
        if configure and (only is None or name in only):
            configure(p)
        p.set_defaults(_fn=fn)
    return parser


def _command_in(argv: list[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _command_in(argv)
    try:
        parser = build_parser(only=[command] if command in COMMANDS else [])
    except ModuleNotFoundError as exc:  # a command whose options come from an MLX module
        if "--debug" in argv or not missing_mlx(exc):
            raise
        print(f"error: {mlx_hint(command)}", file=sys.stderr)
        return 1
    args = parser.parse_args(argv)
    if not getattr(args, "_fn", None):
        parser.print_help()
        return 2
    fast_blas.tell_once(lambda message: print(f"xlstm_metal: {message}", file=sys.stderr))
    try:
        return int(args._fn(args) or 0)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`xlstm-metal plan ... | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit-time flush cannot fail
        return 0
    except Exception as exc:  # noqa: BLE001  (sorted below: the user's problem → one line; a bug → re-raised)
        failure = None if args.debug else user_failure(exc, args.command)
        if failure is None:
            raise
        print(f"error: {failure[0]}", file=sys.stderr)
        return failure[1]
