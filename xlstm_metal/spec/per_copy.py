"""Per-copy values of a ``repeat``: its ``vary`` entries, given as one value per copy or as a placement, the
check that every ``vary`` key is used by a node of the copy, and a node's ``when`` (which copies keep it).

A placement is a mapping ``{VALUE: [positions], ..., default: VALUE}``: copy ``i`` gets the value whose list
holds ``i`` and ``default`` elsewhere, e.g. ``vary: {mixer: {slstm: [1, 3], default: mlstm}}`` with
``type: mixer`` puts sLSTM blocks at positions 1 and 3 and mLSTM blocks elsewhere (the official ``slstm_at``)."""
from __future__ import annotations

import ast
from typing import Any

from .errors import SpecIssue, did_you_mean, short_repr
from .source import SpecSource

PLACEMENT_DEFAULT = "default"
_NOT_VALUES = ("name", "inputs", "output")  # keys whose strings are node names, never per-copy values


def per_copy_values(vary: dict[str, Any], count: int, env: dict[str, Any], src: SpecSource, path: tuple,
                    pattern: str, resolve) -> tuple[list[dict[str, Any]], list[SpecIssue]]:
    """``[{key: value of copy i}]`` for i < count, and the issues found (when any, the values are unusable)."""
    columns: dict[str, list] = {}
    issues: list[SpecIssue] = []
    for key, values in vary.items():
        where = dict(node=pattern, field=f"vary.{key}")
        if isinstance(values, dict):
            column, issue = _placed(key, values, count, env, src, path + ("vary", key), where, resolve)
            if issue is not None:
                issues.append(issue)
                continue
            columns[key] = column
        elif len(values) != count:
            issues.append(src.issue(f"vary.{key} has {len(values)} values but repeat is {count}",
                                    path + ("vary", key), hint="give exactly one value per copy", **where))
        else:
            columns[key] = list(values)
    return [{k: col[i] for k, col in columns.items()} for i in range(count)], issues


def _placed(key: str, placement: dict, count: int, env: dict, src: SpecSource, path: tuple, where: dict,
            resolve) -> tuple[list | None, SpecIssue | None]:
    if isinstance(placement.get(PLACEMENT_DEFAULT), list):
        return None, src.issue(f"vary.{key}.{PLACEMENT_DEFAULT} must be one value (the value of the copies not "
                               "listed)", path + (PLACEMENT_DEFAULT,), **where)
    column: list = [placement.get(PLACEMENT_DEFAULT)] * count
    owner: dict[int, str] = {}
    for value, positions in placement.items():
        if value == PLACEMENT_DEFAULT:
            continue
        if not isinstance(positions, list):
            return None, src.issue(f"vary.{key}.{value} must be a list of copy positions, got "
                                   f"{short_repr(positions)}", path + (value,), **where)
        for k, raw in enumerate(positions):
            try:
                pos = resolve(raw, env)
            except ValueError:
                pos = raw
            if not isinstance(pos, int) or isinstance(pos, bool) or not 0 <= pos < count:
                return None, src.issue(f"position {short_repr(raw)} of '{value}' is not a copy of this repeat",
                                       path + (value, k), hint=f"positions are 0 .. {count - 1}", **where)
            if pos in owner:
                again = "twice" if owner[pos] == value else f"for both '{owner[pos]}' and '{value}'"
                return None, src.issue(f"position {pos} is placed {again}", path + (value, k),
                                       hint="give each position at most one value", **where)
            owner[pos] = value
            column[pos] = value
    if PLACEMENT_DEFAULT not in placement and len(owner) < count:
        missing = [i for i in range(count) if i not in owner]
        return None, src.issue(f"positions {short_repr(missing)} get no value", path, hint=f"add '{PLACEMENT_DEFAULT}: "
                               f"VALUE' for the copies not listed, e.g. {{{next(iter(placement), 'B')}: [..], "
                               f"{PLACEMENT_DEFAULT}: A}}", **where)
    return column, None


def when_holds(when: Any, env: dict[str, Any], src: SpecSource, path: tuple,
               node: str) -> tuple[bool, SpecIssue | None]:
    """``when: {key: value or [values]}`` holds where every named per-copy value (or dim) is one of those given."""
    if not isinstance(when, dict) or not when:
        return False, src.issue(f"when must map per-copy values to the values that keep the node, got "
                                f"{short_repr(when)}", path + ("when",), node=node, field="when",
                                hint="e.g. when: {cell: slstm}")
    for key, wanted in when.items():
        if key not in env:
            return False, src.issue(f"'{key}' is no per-copy value or dim", path + ("when", key), node=node,
                                    field=f"when.{key}", hint=did_you_mean(key, [k for k in env if k != "i"]))
        if env[key] not in (wanted if isinstance(wanted, list) else [wanted]):
            return False, None
    return True, None


def unused_vary_issues(vary: dict[str, Any], nodes: list, src: SpecSource, path: tuple,
                       pattern: str) -> list[SpecIssue]:
    """A ``vary`` key no node of the copy refers to is a mistake (a typo, or a value meant to do something)."""
    used: set[str] = set()
    _collect_names(nodes, used)
    return [src.issue("no node of this repeat uses this per-copy value", path + ("vary", key), node=pattern,
                      field=f"vary.{key}", hint=did_you_mean(key, used) or
                      f"refer to it in a node, e.g. 'type: {key}' or 'num_heads: {key}', or remove it")
            for key in vary if key not in used]


def _collect_names(value: Any, out: set[str]) -> None:
    """Every name a string value of a node (or nested repeat) mentions, as a whole or inside an expression."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "when" and isinstance(item, dict):
                out.update(map(str, item))  # when: {vary key: value}
            if key not in _NOT_VALUES:
                _collect_names(item, out)
    elif isinstance(value, list):
        for item in value:
            _collect_names(item, out)
    elif isinstance(value, str):
        out.add(value)
        if len(value) > 256:  # longer strings are never expressions (expand.MAX_EXPRESSION)
            return
        try:
            out.update(n.id for n in ast.walk(ast.parse(value.strip(), mode="eval")) if isinstance(n, ast.Name))
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            pass
