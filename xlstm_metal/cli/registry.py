"""The sub-command registry: each command module registers ``fn(args)`` with its argument parser."""
from __future__ import annotations

from typing import Callable

COMMANDS: dict[str, tuple[Callable | None, Callable, str]] = {}


def command(name: str, help: str, configure: Callable | None = None):
    """Register ``fn(args)`` as sub-command ``name``; ``configure(parser)`` adds its arguments."""
    def register(fn):
        COMMANDS[name] = (configure, fn, help)
        return fn
    return register
