"""Lazy package exports: ``import xlstm_metal`` (and ``--help``) must work before MLX is installed, so a package
names what it exports and imports the module that defines a name only when that name is first used."""
from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``exports`` maps a name to the (relative) module defining it."""
    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(exports[name], package), name)
    return __getattr__
