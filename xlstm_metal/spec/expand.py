"""Expanding a spec: resolve dims, stamp ``repeat`` copies and resolve every input to a node name, giving a
flat list of ``ResolvedNode`` in file order."""
from __future__ import annotations

import ast
import operator
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from .errors import SpecError, SpecIssue, collapse_unions, did_you_mean, short_repr
from .model import NodeEntry, RepeatEntry, WiringSpecFile
from .per_copy import per_copy_values, unused_vary_issues, when_holds
from .source import SpecSource

_COMMON_FIELDS = set(NodeEntry.model_fields)
MAX_REPEAT = 10_000  # copies per repeat: far above any real model, low enough to fail fast on a typo
MAX_NODES = 100_000  # nodes of the expanded spec, nested repeats included
MAX_EXPRESSION = 256  # characters of a dim expression; longer strings are plain strings


@dataclass
class ResolvedNode:
    name: str
    type: str
    inputs: list[str]
    params: dict[str, Any]
    kernel: str = "auto"
    chunk_size: int | None = None
    path: tuple = ()  # where the entry is in the YAML document (for line numbers)
    key_paths: dict[str, tuple] = field(default_factory=dict)  # parameter -> its place under path, if not (key,)


@dataclass
class ExpandedSpec:
    name: str
    description: str
    dims: dict[str, Any]
    inputs: list[str]
    outputs: list[str]
    nodes: list[ResolvedNode]
    source: SpecSource
    groups: dict[str, int] = field(default_factory=dict)  # repeat pattern -> copies

    def node_issue(self, node: ResolvedNode, key: str | None, message: str, hint: str | None = None) -> SpecIssue:
        """A ``SpecIssue`` about field ``key`` of ``node``, at its line."""
        where = node.key_paths.get(key, (key,)) if key else ()
        return self.source.issue(message, node.path + where, node=node.name, field=key, hint=hint)


# ---------------------------------------------------------------- dims and expressions
_BINOPS = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}


class _Unresolved(Exception):
    pass


def _eval(node: ast.AST, env: dict[str, Any]) -> Any:
    if isinstance(node, ast.Expression):
        return _eval(node.body, env)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        if isinstance(node.value, int) and abs(node.value) > 2**62:
            raise ValueError(f"number out of range: {node.value}")
        return node.value
    if isinstance(node, ast.Name):
        if node.id in env:
            return env[node.id]
        raise _Unresolved(node.id)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        left, right = _eval(node.left, env), _eval(node.right, env)
        if isinstance(node.op, ast.Pow) and (abs(right) > 64 or abs(left) > 2**32):
            raise ValueError(f"exponent too large in {ast.unparse(node)}")
        result = _BINOPS[type(node.op)](left, right)
        if isinstance(result, complex) or (isinstance(result, int) and abs(result) > 2**62):
            raise ValueError(f"value out of range in {ast.unparse(node)}")
        return result
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand, env))
    raise _Unresolved(ast.dump(node))


def resolve_value(value: Any, env: dict[str, Any]) -> Any:
    """A dim name or arithmetic over dims (``"embedding_dim // num_heads"``) → its value; other strings
    (``"single"``) come back unchanged, for the block's parameter model to judge."""
    if isinstance(value, list):
        return [resolve_value(v, env) for v in value]
    tree = _parse_expression(value)
    if tree is None:
        return value
    try:
        result = _eval(tree, env)
    except _Unresolved:
        return value
    except (ZeroDivisionError, OverflowError, TypeError, RecursionError) as exc:
        raise ValueError(f"cannot evaluate '{value}': {exc}") from None
    if isinstance(result, float) and result.is_integer() and not any(c in value for c in "./e"):
        result = int(result)
    return result


def _parse_expression(value: Any) -> ast.Expression | None:
    if not isinstance(value, str) or len(value) > MAX_EXPRESSION:
        return None
    try:
        return ast.parse(value.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # ValueError: a NUL character
        return None


def _dim_hint(word: Any, env: dict[str, Any]) -> str | None:
    """What a name that should be an integer dim is: its value when it is a dim, else the closest dim name."""
    return f"dim '{word}' is {short_repr(env[word])}" if word in env else did_you_mean(word, env)


def _resolve_dims(raw: dict[str, Any], src: SpecSource) -> dict[str, Any]:
    env: dict[str, Any] = {}
    pending = dict(raw)
    while pending:
        progressed = False
        for key, value in list(pending.items()):
            try:
                resolved = resolve_value(value, env)
            except ValueError as exc:
                raise SpecError(src.issue(str(exc), ("dims", key), field=f"dims.{key}")) from None
            if isinstance(resolved, str) and isinstance(value, str) and _mentions_unresolved(value, pending, key):
                continue  # depends on a dim not resolved yet
            env[key] = resolved
            del pending[key]
            progressed = True
        if not progressed:
            raise SpecError(src.issue(f"dims refer to each other in a cycle or to unknown names: {', '.join(pending)}",
                                      ("dims", next(iter(pending))), field="dims",
                                      hint="every dim must be a number, a string, or arithmetic over other dims"))
    return env


def _mentions_unresolved(value: str, pending: dict, own: str) -> bool:
    tree = _parse_expression(value)
    return tree is not None and any(isinstance(n, ast.Name) and n.id in pending and n.id != own
                                    for n in ast.walk(tree))


# ---------------------------------------------------------------- scopes
@dataclass
class _Scope:
    local: dict[str, str]  # inner local name -> full name
    bindings: dict[str, tuple]  # local name -> (the name it stands for, the scope that name is read in)
    parent: "_Scope | None"
    env: dict[str, Any]


def _validation_issues(exc: ValidationError, src: SpecSource, base: tuple, node: str | None,
                       known: list[str]) -> list[SpecIssue]:
    issues = []
    for err in collapse_unions(exc.errors()):
        loc = tuple(err["loc"])
        fld = ".".join(str(p) for p in loc) or None
        hint = None
        if err["type"] == "extra_forbidden":
            msg = f"unknown key '{loc[-1]}'"
            hint = did_you_mean(loc[-1], known) or f"allowed keys: {', '.join(known)}"
        elif err["type"] == "missing":
            msg = "required key is missing"
        else:
            msg = f"{err['msg']} (got {short_repr(err.get('input'))})"
        issues.append(src.issue(msg, base + loc, node=node, field=fld, hint=hint))
    return issues


def expand_spec(src: SpecSource) -> ExpandedSpec:
    data = src.data
    if not isinstance(data, dict):
        raise SpecError("a wiring spec must be a mapping with keys name, dims, inputs, nodes, outputs",
                        file=src.file, line=1)
    try:
        top = WiringSpecFile.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_validation_issues(exc, src, (), None, list(WiringSpecFile.model_fields))) from None

    dims = _resolve_dims(top.dims, src)
    out = ExpandedSpec(top.name, top.description, dims, list(top.inputs), [], [], src)
    global_scope = _Scope({}, {}, None, dims)
    pending_inputs: list[tuple[ResolvedNode, list[str], _Scope]] = []
    aliases: dict[str, tuple[str, _Scope]] = {}  # group name / name.last.node -> (local name, copy scope)
    issues: list[SpecIssue] = []
    seen: dict[str, tuple] = {}
    failed: set[str] = set()  # nodes and repeat groups already reported as broken: their users are not reported
    types_at: dict[tuple, tuple[str, set, dict]] = {}  # node entry path -> (first copy, its types, its by_type)

    def is_failed(name: str) -> bool:
        parts = name.split(".")
        return any(".".join(parts[:k]) in failed for k in range(1, len(parts) + 1))

    def add_node(entry: dict, path: tuple, prefix: str, scope: _Scope) -> str | None:
        if not isinstance(entry, dict):
            issues.append(src.issue("each node must be a mapping with name, type, inputs", path))
            return None
        try:
            ne = NodeEntry.model_validate(entry)
        except ValidationError as exc:
            name = entry.get("name") if isinstance(entry.get("name"), str) else None
            issues.extend(_validation_issues(exc, src, path, name, list(_COMMON_FIELDS)))
            if name:
                failed.add(prefix + name)
                scope.local[name] = prefix + name
            return None
        full = f"{prefix}{ne.name}"
        if len(out.nodes) >= MAX_NODES:
            raise SpecError(src.issue(f"the spec expands to more than {MAX_NODES:,} nodes", path, node=full,
                                      hint="check the repeat counts (nested repeats multiply)"))
        if full in seen:
            issues.append(src.issue(f"duplicate node name (first defined at line {src.line(seen[full])})",
                                    path + ("name",), node=full, field="name",
                                    hint="node names must be unique; rename one of them"))
            return None
        seen[full] = path
        per_copy = scope.env.get(ne.type)  # a type naming a vary key (or dim) takes that copy's value
        block_type = per_copy if isinstance(per_copy, str) else ne.type
        types_at.setdefault(path, (full, set(), ne.by_type))[1].add(block_type)
        own = ne.by_type.get(block_type, {})
        key_paths = {key: ("by_type", block_type, key) for key in own}
        params = {}
        for key, value in [(k, v) for k, v in entry.items() if k not in own] + list(own.items()):
            if key in _COMMON_FIELDS and key not in key_paths:
                continue
            if key in _COMMON_FIELDS and key not in ("kernel", "chunk_size"):
                issues.append(src.issue(f"'{key}' cannot differ per type", path + key_paths[key], node=full,
                                        field=f"by_type.{block_type}.{key}", hint="by_type holds block parameters, "
                                        "kernel and chunk_size"))
                continue
            try:
                params[key] = resolve_value(value, scope.env)
            except ValueError as exc:
                issues.append(src.issue(str(exc), path + key_paths.get(key, (key,)), node=full, field=key))
        ne.kernel = params.pop("kernel", ne.kernel) if "kernel" in own else ne.kernel
        ne.chunk_size = params.pop("chunk_size") if "chunk_size" in own else ne.chunk_size
        chunk = ne.chunk_size
        if isinstance(chunk, str):
            chunk = resolve_value(chunk, scope.env)
            if not isinstance(chunk, int):
                at = path + key_paths.get("chunk_size", ("chunk_size",))
                issues.append(src.issue(f"chunk_size must be an integer or a dim name, got {ne.chunk_size!r}", at,
                                        node=full, field="chunk_size", hint=_dim_hint(ne.chunk_size, scope.env)))
                chunk = None
        node = ResolvedNode(full, block_type, [], params, ne.kernel, chunk, path, key_paths)
        out.nodes.append(node)
        pending_inputs.append((node, list(ne.inputs), scope))
        return full

    def walk(entries: list, path: tuple, prefix: str, scope: _Scope) -> None:
        for idx, entry in enumerate(entries):
            if isinstance(entry, dict) and "repeat" in entry:
                add_repeat(entry, path + (idx,), prefix, scope)
            elif isinstance(entry, dict) and "when" in entry and not kept(entry, path + (idx,), prefix, scope):
                continue
            elif (name := add_node(entry, path + (idx,), prefix, scope)) and isinstance(entry.get("name"), str):
                scope.local[entry["name"]] = name

    def kept(entry: dict, path: tuple, prefix: str, scope: _Scope) -> bool:
        """Whether the node's ``when`` keeps it in this copy; left out, its name stands for its first input."""
        name, inputs = entry.get("name"), entry.get("inputs")
        holds, issue = when_holds(entry["when"], scope.env, src, path, f"{prefix}{name}")
        if issue is not None:
            issues.append(issue)
            if isinstance(name, str):  # reported: its users are not
                failed.add(prefix + name)
                scope.local[name] = prefix + name
            return False
        if holds:
            return True
        if not (isinstance(name, str) and isinstance(inputs, list) and inputs and isinstance(inputs[0], str)
                and inputs[0] != name):
            issues.append(src.issue("a node that 'when' leaves out needs a first input to stand for it",
                                    path + ("when",), node=f"{prefix}{name}", field="when"))
            return False
        scope.bindings[name] = (inputs[0], scope)
        aliases[prefix + name] = (name, scope)  # its full name, read from outside the copy
        return False

    def add_repeat(entry: dict, path: tuple, prefix: str, scope: _Scope) -> None:
        if isinstance(entry.get("name"), str):  # until the copies are stamped: its names are not reported as unknown
            failed.add((prefix + entry["name"]).replace(".{i}", "").replace("{i}", "").strip("."))
        try:
            rep = RepeatEntry.model_validate(entry)
        except ValidationError as exc:
            issues.extend(_validation_issues(exc, src, path, None, list(RepeatEntry.model_fields)))
            return
        try:
            count = resolve_value(rep.repeat, scope.env)
        except ValueError:
            count = None
        if not isinstance(count, int) or isinstance(count, bool) or count < 1 or count > MAX_REPEAT:
            issues.append(src.issue(f"repeat count must be a positive integer (at most {MAX_REPEAT}) or a dim name, "
                                    f"got {rep.repeat!r}", path + ("repeat",), field="repeat",
                                    hint=_dim_hint(rep.repeat, scope.env)))
            return
        if "{i}" not in rep.name:
            issues.append(src.issue("a repeat name must contain {i} so that copies get distinct names",
                                    path + ("name",), field="name", hint=f"e.g. '{rep.name}.{{i}}'"))
            return
        pattern = prefix + rep.name
        copies, vary_issues = per_copy_values(rep.vary, count, scope.env, src, path, pattern, resolve_value)
        vary_issues += unused_vary_issues(rep.vary, rep.nodes, src, path, pattern)
        if vary_issues:
            issues.extend(vary_issues)
            return
        out.groups[pattern] = count
        inner_names = [n.get("name") for n in rep.nodes if isinstance(n, dict)]
        output_local = rep.output or (inner_names[-1] if inner_names else None)
        if rep.output and rep.output not in inner_names:
            issues.append(src.issue(f"output '{rep.output}' is not a node of this repeat", path + ("output",),
                                    field="output", hint=did_you_mean(rep.output, [n for n in inner_names if n])
                                    or f"inner nodes: {', '.join(map(str, inner_names))}"))
            return
        copy_scope = None
        before = len(out.nodes)
        for i in range(count):
            if i == 1 and before + (len(out.nodes) - before) * count > MAX_NODES:
                raise SpecError(src.issue(f"repeat makes {count:,} copies of {len(out.nodes) - before:,} nodes: more "
                                          f"than {MAX_NODES:,} nodes in all", path + ("repeat",), field="repeat",
                                          hint="nested repeats multiply; lower the counts"))
            copy_prefix = pattern.format(i=i) + "."
            env = dict(scope.env, i=i, **copies[i])
            bindings = {local: (ref, scope) if i == 0 else (str(output_local), copy_scope)
                        for local, ref in rep.inputs.items()}  # copy i > 0 reads copy i-1's output
            copy_scope = _Scope({}, bindings, scope, env)
            walk(rep.nodes, path + ("nodes",), copy_prefix, copy_scope)
        for local in inner_names:
            if isinstance(local, str):
                aliases[pattern.format(i="last") + "." + local] = (local, copy_scope)
        base = pattern.replace(".{i}", "").replace("{i}", "").strip(".")
        if base:
            aliases[base] = (str(output_local), copy_scope)
        failed.discard(base)

    walk(top.nodes, ("nodes",), "", global_scope)
    for path, (first, types, by_type) in types_at.items():
        issues.extend(src.issue(f"no copy of this node has type '{key}'", path + ("by_type", key), node=first,
                                field=f"by_type.{key}", hint=did_you_mean(key, types) or
                                f"this node's types: {', '.join(sorted(types))}")
                      for key in by_type if key not in types)

    all_names = set(seen) | set(out.inputs)

    def resolve_ref(ref: str, scope: _Scope | None) -> str | None:
        followed: set = set()  # bindings and aliases taken: a loop (left-out nodes standing for each other) ends
        while True:
            while scope is not None and ref not in scope.local and ref not in scope.bindings:
                scope = scope.parent
            if scope is not None and ref in scope.local:
                return scope.local[ref]
            if scope is None and (ref in all_names or is_failed(ref)):
                return ref
            step = (ref, id(scope))
            if step in followed or (scope is None and ref not in aliases):
                return None
            followed.add(step)
            ref, scope = scope.bindings[ref] if scope is not None else aliases[ref]

    for node, refs, scope in pending_inputs:
        resolved = []
        for k, ref in enumerate(refs):
            target = resolve_ref(ref, scope)
            if target is not None and is_failed(target):
                continue  # a node or repeat already reported as broken
            if target is None:
                visible = set(all_names) | set(aliases)
                s = scope
                while s is not None:
                    visible |= set(s.local) | set(s.bindings)
                    s = s.parent
                hint = did_you_mean(ref, visible) or "inputs must name a node defined in the spec or a graph input"
                issues.append(src.issue(f"input '{ref}' names no node or graph input", node.path + ("inputs", k),
                                        node=node.name, field="inputs", hint=hint))
            else:
                resolved.append(target)
        node.inputs = resolved

    for k, ref in enumerate(top.outputs):
        target = resolve_ref(ref, global_scope)
        if target is None:
            issues.append(src.issue(f"output '{ref}' names no node", ("outputs", k), field="outputs",
                                    hint=did_you_mean(ref, set(all_names) | set(aliases))))
        else:
            out.outputs.append(target)
    if issues:
        raise SpecError(issues)
    return out
