"""Which failures are the user's to fix (one line, no traceback) and which are bugs (a traceback to report).

Bad input is an ``InputError`` (spec, config, checkpoint, state, tokenizer, token ids, sizes); the OS refusing a
file, memory running out and a missing MLX are the user's environment. Anything else is ours: it keeps its traceback.
"""
from __future__ import annotations

from ..errors import InputError

MLX_EXTRAS = ("pip install 'xlstm-metal[cpu]' (any machine) or 'xlstm-metal[cuda]' (NVIDIA GPU); "
              "on a Mac, pip install mlx")


def missing_mlx(exc: BaseException) -> bool:
    name = getattr(exc, "name", None) or ""
    return isinstance(exc, ModuleNotFoundError) and (name == "mlx" or name.startswith("mlx."))


def mlx_hint(command: str | None) -> str:
    return f"xlstm-metal {command or ''} needs MLX, which is not installed: {MLX_EXTRAS}".replace("  ", " ")


def user_failure(exc: BaseException, command: str | None) -> tuple[str, int] | None:
    """``(one-line message, exit code)`` for a failure the user can fix, else None (a bug: show the traceback)."""
    if isinstance(exc, InputError):  # exit 2 like argparse for a wrong spec (usage of the format), else 1
        from ..spec import SpecError

        return " ".join(str(exc).split("\n")), 2 if isinstance(exc, SpecError) else 1
    if missing_mlx(exc):
        return mlx_hint(command), 1
    if isinstance(exc, MemoryError):
        return f"out of memory{': ' + str(exc) if str(exc) else ''}; choose smaller sizes or a smaller dtype", 1
    if isinstance(exc, FloatingPointError):  # training diverged: the hyper-parameters' doing
        return str(exc), 1
    if isinstance(exc, OSError) and (exc.filename or exc.strerror):
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror or exc}{where}", 1
    if isinstance(exc, OSError):  # raised with a message of ours (e.g. FileNotFoundError("no tokenizer.json in …"))
        return str(exc), 1
    cause = getattr(exc, "error", None)  # runtime.NodeExecutionError wraps the node's failure
    if cause is not None and user_failure(cause, command):
        return f"{exc}", user_failure(cause, command)[1]
    return None
