"""The sub-command registry: each command module registers ``fn(args)`` with its argument parser."""
from __future__ import annotations

from typing import Callable

COMMANDS: dict[str, tuple[Callable, Callable, str]] = {}


def command(name: str, help: str):
    """Register ``fn(args)`` as a sub-command; ``configure(parser)`` adds its arguments."""
    def wrap(configure):
        def deco(fn):
            COMMANDS[name] = (configure, fn, help)
            return fn
        return deco
    return wrap
