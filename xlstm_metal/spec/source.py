"""Reading YAML with ``yaml.safe_load`` while remembering the line of every key and list item."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import SpecError, SpecIssue


@dataclass
class SpecSource:
    """Parsed document plus ``lines[path] -> 1-based line`` for error messages."""

    data: Any
    file: str | None = None
    lines: dict[tuple, int] = field(default_factory=dict)

    def line(self, path: tuple) -> int | None:
        """Line of ``path`` or of its closest ancestor that has one."""
        path = tuple(path)
        return next((self.lines[path[:k]] for k in range(len(path), -1, -1) if path[:k] in self.lines), None)

    def issue(self, message: str, path: tuple = (), **where) -> SpecIssue:
        """A ``SpecIssue`` in this file at the line of ``path`` (``where``: node, field, hint)."""
        return SpecIssue(message, file=self.file, line=self.line(path), **where)


def _index_lines(node: yaml.Node, path: tuple, out: dict) -> None:
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            out[path + (key_node.value,)] = key_node.start_mark.line + 1  # a key's own line, not its value's
            _index_lines(value_node, path + (key_node.value,), out)
    elif isinstance(node, yaml.SequenceNode):
        for idx, item in enumerate(node.value):
            _index_lines(item, path + (idx,), out)


def parse_yaml(text: str, file: str | None = None) -> SpecSource:
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        if line is None and isinstance(getattr(exc, "position", None), int):  # reader errors: bad characters
            line = text[: exc.position].count("\n") + 1
        problem = getattr(exc, "problem", None) or getattr(exc, "reason", None) or str(exc)
        raise SpecError(f"not valid YAML: {problem}", file=file, line=line,
                        hint="check indentation, colons and brackets around this line") from None
    lines: dict = {}
    if root is not None:
        _index_lines(root, (), lines)
    return SpecSource(data, file, lines)


def read_source(spec: Any) -> SpecSource:
    """A path, a YAML string or an already-parsed dict → ``SpecSource``."""
    if isinstance(spec, SpecSource):
        return spec
    if isinstance(spec, dict):
        return SpecSource(spec, None, {})
    if isinstance(spec, Path) or (isinstance(spec, str) and "\n" not in spec
                                  and spec.strip().endswith((".yaml", ".yml"))):
        path = Path(spec)
        if not path.exists():
            raise SpecError(f"spec file not found: {path}", file=str(path),
                            hint="check the path, or pass a shipped spec name such as 'xlstm_tiny'")
        return parse_yaml(path.read_text(encoding="utf-8"), str(path))
    if isinstance(spec, str):
        return parse_yaml(spec, None)
    raise SpecError(f"cannot read a wiring spec from {type(spec).__name__}", hint="pass a path, YAML text or a dict")
