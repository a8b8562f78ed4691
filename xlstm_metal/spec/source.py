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


MAX_YAML_NODES = 200_000  # scalars, lists and mappings once aliases are expanded: far above any real spec
MAX_YAML_DEPTH = 64  # nesting of lists and mappings


class _TooLarge(ValueError):
    pass


class _BoundedLoader(yaml.SafeLoader):
    """``SafeLoader`` that stops composing past ``MAX_YAML_DEPTH`` levels (before Python's recursion limit)."""

    depth = 0

    def compose_node(self, parent, index):
        self.depth += 1
        if self.depth > MAX_YAML_DEPTH:
            raise _TooLarge(f"lists and mappings are nested more than {MAX_YAML_DEPTH} deep",
                            self.peek_event().start_mark.line + 1)
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _expanded_size(node: yaml.Node, sizes: dict, depth: int = 0) -> int:
    """How many nodes ``node`` becomes once its aliases are expanded (memoised, so a bomb is counted, not built)."""
    if id(node) in sizes:
        if sizes[id(node)] is None:
            raise _TooLarge("an alias refers to a list or mapping that contains it", node.start_mark.line + 1)
        return sizes[id(node)]
    if depth > MAX_YAML_DEPTH:
        raise _TooLarge(f"lists and mappings are nested more than {MAX_YAML_DEPTH} deep", node.start_mark.line + 1)
    sizes[id(node)] = None  # in progress
    children = [c for pair in node.value for c in pair] if isinstance(node, yaml.MappingNode) else (
        node.value if isinstance(node, yaml.SequenceNode) else [])
    total = 1
    for child in children:
        total += _expanded_size(child, sizes, depth + 1)
        if total > MAX_YAML_NODES:
            raise _TooLarge(f"the document expands to more than {MAX_YAML_NODES:,} values (aliases included)",
                            node.start_mark.line + 1)
    sizes[id(node)] = total
    return total


def _yaml_error(exc: yaml.YAMLError, text: str, file: str | None) -> SpecError:
    mark = getattr(exc, "problem_mark", None)
    line = mark.line + 1 if mark is not None else None
    if line is None and isinstance(getattr(exc, "position", None), int):  # reader errors: bad characters
        line = text[: exc.position].count("\n") + 1
    problem = getattr(exc, "problem", None) or getattr(exc, "reason", None) or str(exc)
    return SpecError(f"not valid YAML: {problem}", file=file, line=line,
                     hint="check indentation, colons and brackets around this line")


def parse_yaml(text: str, file: str | None = None) -> SpecSource:
    """Safe YAML (no tags that run code) whose size is checked before it is built: aliases that would expand
    past ``MAX_YAML_NODES`` values, or nesting deeper than ``MAX_YAML_DEPTH``, are refused."""
    loader = None
    try:
        loader = _BoundedLoader(text)
        root = loader.get_single_node()
        if root is not None:
            _expanded_size(root, {})
        data = loader.construct_document(root) if root is not None else None
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, text, file) from None
    except _TooLarge as exc:
        raise SpecError(f"refused: {exc.args[0]}", file=file, line=exc.args[1],
                        hint="a wiring spec is a short list of nodes; write copies with repeat") from None
    except (ValueError, OverflowError) as exc:  # a scalar the YAML constructors reject, e.g. a date 2024-13-01
        raise SpecError(f"not valid YAML: {exc}", file=file) from None
    finally:
        if loader is not None:
            loader.dispose()
    lines: dict = {}
    if root is not None:
        _index_lines(root, (), lines)
    return SpecSource(data, file, lines)


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SpecError(f"cannot read the spec file: {exc.strerror or exc}", file=str(path)) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SpecError(f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})", file=str(path),
                        line=line, hint="save the spec as UTF-8") from None


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
        return parse_yaml(_read_text(path), str(path))
    if isinstance(spec, str):
        return parse_yaml(spec, None)
    raise SpecError(f"cannot read a wiring spec from {type(spec).__name__}", hint="pass a path, YAML text or a dict")
