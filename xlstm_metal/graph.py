"""Spec → ``networkx.DiGraph`` of block instances with statically inferred tensor types.

Each node carries ``block_cls``, ``params`` (validated), ``block`` (the ``mlx.nn.Module``; MLX allocates
lazily), ``in_types`` / ``out_type`` and ``spec``, the ``ResolvedNode`` it came from.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import networkx as nx
from pydantic import ValidationError

from xlstm_metal.blocks import Block, ShapeError, TensorType, block_types
from xlstm_metal.kernels import kernels as registered_kernels

from . import memory
from .spec import ExpandedSpec, ResolvedNode, SpecError, SpecIssue, load_spec
from .spec.errors import collapse_unions, did_you_mean, short_repr
from .spec.expand import MAX_EXPRESSION
from .spec.model import KERNEL_CHOICES

MAX_DIM = 2**31 - 1  # MLX array sizes are 32-bit integers


@dataclass
class ModelGraph:
    """A validated architecture: the DAG, its topological order, inputs and outputs."""

    graph: nx.DiGraph
    spec: ExpandedSpec
    order: list[str]
    inputs: list[str]
    outputs: list[str]

    @property
    def name(self) -> str:
        return self.spec.name

    def node(self, name: str) -> dict[str, Any]:
        return self.graph.nodes[name]

    def block(self, name: str) -> Block:
        return self.graph.nodes[name]["block"]

    def compute_nodes(self) -> list[str]:
        return [n for n in self.order if n not in self.inputs]

    def stateful_nodes(self) -> list[str]:
        return [n for n in self.compute_nodes() if self.node(n)["block_cls"].stateful]

    def lint(self) -> list[str]:
        """Structural checks in the spirit of ``torch.fx.Graph.lint``; returns problems (empty = fine)."""
        problems = []
        position = {n: k for k, n in enumerate(self.order)}
        if set(position) != set(self.graph.nodes):
            problems.append("topological order does not cover every node")
        for u, v in self.graph.edges:
            if position.get(u, -1) >= position.get(v, -1):
                problems.append(f"'{v}' uses '{u}' before it is defined")
        for n in self.compute_nodes():
            data = self.node(n)
            if list(self.graph.predecessors(n)) and len(data["spec"].inputs) == 0:
                problems.append(f"'{n}' has edges but no declared inputs")
            for src in data["spec"].inputs:
                if src not in self.graph:
                    problems.append(f"'{n}' reads '{src}', which is not in the graph")
        for o in self.outputs:
            if o not in self.graph:
                problems.append(f"output '{o}' is not in the graph")
        if not nx.is_directed_acyclic_graph(self.graph):
            problems.append("graph has a cycle")
        used = set(self.outputs).union(*(nx.ancestors(self.graph, o) for o in self.outputs if o in self.graph))
        dead = [n for n in self.compute_nodes() if n not in used]
        if dead:
            problems.append(f"nodes that reach no output: {', '.join(dead)}")
        problems.extend(self._vocab_mismatches())
        return problems

    def _vocab_mismatches(self) -> list[str]:
        """An lm_head whose vocabulary differs from the embedding's predicts ids the model cannot read (or misses
        ids it can)."""
        def sizes(type_name, key):
            return {n: getattr(self.node(n)["params"], key) for n in self.compute_nodes()
                    if self.node(n)["type"] == type_name}

        embeddings = sizes("embedding", "num_embeddings")
        return [f"lm_head '{h}' has vocab_size {v:,} but embedding '{e}' has num_embeddings {w:,}"
                for h, v in sizes("lm_head", "vocab_size").items() for e, w in embeddings.items() if v != w]

    def num_parameters(self) -> int:
        return sum(math.prod(shape) for n in self.compute_nodes() for shape, _ in _parameter_shapes(self.block(n)))

    def parameter_bytes(self, dtype: Any = "float32") -> dict[str, int]:
        """Bytes of each node's parameters once cast to ``dtype``, from their shapes (nothing is evaluated)."""
        import mlx.core as mx

        itemsize = (getattr(mx, dtype) if isinstance(dtype, str) else dtype).size
        return {n: sum(math.prod(shape) * (itemsize if mx.issubdtype(dt, mx.floating) else dt.size)
                       for shape, dt in _parameter_shapes(self.block(n))) for n in self.compute_nodes()}

    def memory_issue(self, dtype: Any = "float32", limit: int | None = None) -> SpecIssue | None:
        """Why the parameters in ``dtype`` cannot be held (more bytes than ``limit``, default this machine's
        memory), naming the largest node and its largest size field; None when they fit."""
        limit = limit or memory.available_memory()
        sizes = self.parameter_bytes(dtype)
        total = sum(sizes.values())
        if not limit or total <= limit:
            return None
        name = max(sizes, key=sizes.get)
        field, value = max(_int_fields(self.node(name)["params"]), key=lambda kv: kv[1], default=(None, 0))
        return self.spec.node_issue(
            self.node(name)["spec"], field,
            f"the parameters need {_gb(total)} in {str(dtype).split('.')[-1]}, more than the {_gb(limit)} of memory "
            f"here; this node holds {_gb(sizes[name])}" + (f" ({field} = {value:,})" if field else ""),
            "lower the sizes, or use a smaller dtype (--dtype bfloat16)")

    def require_memory(self, dtype: Any = "float32", limit: int | None = None) -> None:
        """Raise ``SpecError`` (before MLX allocates anything) when the parameters cannot fit in memory."""
        issue = self.memory_issue(dtype, limit)
        if issue is not None:
            raise SpecError(issue)

    def __str__(self) -> str:
        rows = [("node", "type", "inputs", "output")]
        for n in self.order:
            d = self.node(n)
            inputs = ", ".join(d["spec"].inputs) if d.get("spec") else ""
            rows.append((n, d.get("type", "input"), inputs, str(d["out_type"])))
        return f"ModelGraph '{self.name}' ({len(self.compute_nodes())} nodes)\n" + format_table(rows)



def _gb(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB"


def _parameter_shapes(block) -> list[tuple[tuple, Any]]:
    from mlx.utils import tree_flatten

    return [(tuple(v.shape), v.dtype) for _, v in tree_flatten(block.parameters())]


def _int_fields(params) -> list[tuple[str, int]]:
    """``(field, value)`` for every integer parameter (and integer list item) of a block."""
    out = []
    for key in type(params).model_fields:
        value = getattr(params, key)
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(v, int) and not isinstance(v, bool):
                out.append((key, v))
    return out


def format_table(rows: list[tuple]) -> str:
    """Left-aligned columns; the first row is the header, underlined with dashes."""
    widths = [max(len(str(r[c])) for r in rows) for c in range(len(rows[0]))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _param_issue(exc: ValidationError, spec: ExpandedSpec, node: ResolvedNode, params_cls) -> list[SpecIssue]:
    issues = []
    known = list(params_cls.model_fields)
    # A misspelt name shows up as "unknown" plus "missing": report the unknown one (with its hint) first.
    for err in sorted(collapse_unions(exc.errors()), key=lambda e: e["type"] != "extra_forbidden"):
        loc = tuple(err["loc"])
        fld = str(loc[0]) if loc else None
        raw = node.params.get(fld) if fld else None
        hint = None
        if err["type"] == "extra_forbidden":
            msg = f"unknown parameter for block type '{node.type}'"
            hint = did_you_mean(fld, known) or (f"parameters of '{node.type}': {', '.join(known)}" if known
                                                else f"'{node.type}' takes no parameters")
        elif err["type"] == "missing":
            msg = f"required parameter of block type '{node.type}' is missing"
            info = params_cls.model_fields.get(fld)
            if info is not None and info.description:
                hint = f"{fld}: {info.description}"
        else:
            msg = f"{err['msg']} (got {short_repr(raw)})"
            if isinstance(raw, str) and len(raw) > MAX_EXPRESSION:
                hint = f"a dim expression has at most {MAX_EXPRESSION} characters"
            elif isinstance(raw, str):
                hint = did_you_mean(raw, spec.dims) or (
                    f"{short_repr(raw)} is not a known dim; dims: {', '.join(spec.dims)}" if spec.dims else None)
        issues.append(spec.node_issue(node, fld, msg, hint))
    return issues


def build_graph(spec_or_path: Any, *, materialize: bool = True) -> ModelGraph:
    """Compile a wiring spec (path, YAML text, dict or ``ExpandedSpec``) into a ``ModelGraph``.

    Raises ``SpecError`` listing every problem found (unknown types, bad parameters, dangling
    inputs, cycles, shape mismatches). ``materialize=False`` skips creating the MLX modules.
    """
    spec = spec_or_path if isinstance(spec_or_path, ExpandedSpec) else load_spec(spec_or_path)
    registry = block_types()
    g = nx.DiGraph()
    issues: list[SpecIssue] = []
    index = {}
    for name in spec.inputs:
        g.add_node(name, type="input", out_type=TensorType.tokens(), spec=None, block=None, block_cls=None)
        index[name] = -1
    for k, node in enumerate(spec.nodes):
        index[node.name] = k
        cls = registry.get(node.type)
        if cls is None:
            issues.append(spec.node_issue(node, "type", f"unknown block type '{node.type}'",
                                          did_you_mean(node.type, registry) or f"known types: {', '.join(registry)}"))
            continue
        try:
            params = cls.Params.model_validate(node.params)
        except ValidationError as exc:
            issues.extend(_param_issue(exc, spec, node, cls.Params))
            continue
        issues.extend(spec.node_issue(node, key, f"{value:,} is too large: a size is at most {MAX_DIM:,}")
                      for key, value in _int_fields(params) if abs(value) > MAX_DIM)
        arity = cls.num_inputs
        if (arity is not None and len(node.inputs) != arity) or (arity is None and len(node.inputs) < 2):
            want = f"exactly {arity}" if arity is not None else "at least 2"
            issues.append(spec.node_issue(node, "inputs",
                                          f"block type '{node.type}' takes {want} input(s), got {len(node.inputs)}"))
        issues.extend(_check_overrides(spec, node, cls))
        g.add_node(node.name, type=node.type, block_cls=cls, params=params, spec=node, block=None)
    if issues:
        raise SpecError(issues)
    for node in spec.nodes:
        for src in node.inputs:
            g.add_edge(src, node.name)
    try:
        cycle = nx.find_cycle(g)
    except nx.NetworkXNoCycle:
        cycle = None
    if cycle:
        names = [u for u, _ in cycle] + [cycle[0][0]]
        raise SpecError(spec.node_issue(g.nodes[names[0]]["spec"], "inputs",
                                        f"the graph has a cycle: {' -> '.join(names)}", "a node cannot depend on its "
                                        "own output; carry state through a recurrent block instead"))
    order = list(nx.lexicographical_topological_sort(g, key=lambda n: index[n]))
    failed: set[str] = set()  # nodes whose type is unknown: what reads them is not checked (no cascade)
    for name in order:
        data = g.nodes[name]
        if data["type"] == "input":
            continue
        node: ResolvedNode = data["spec"]
        in_types = [g.nodes[s]["out_type"] for s in node.inputs]
        data["in_types"] = in_types
        data["out_type"] = TensorType("unknown")
        if failed.intersection(node.inputs):
            failed.add(name)
            continue
        try:
            out_type = data["block_cls"].infer(data["params"], in_types)
            if out_type.dim is not None and out_type.dim > MAX_DIM:
                raise ShapeError(f"output width {out_type.dim:,} is too large: a size is at most {MAX_DIM:,}", None)
            data["out_type"] = out_type
        except ShapeError as exc:
            detail = ", ".join(f"{s}: {t}" for s, t in zip(node.inputs, in_types))
            issues.append(spec.node_issue(node, exc.field or "inputs", f"{exc} (inputs: {detail})"))
            failed.add(name)
    for o in spec.outputs:
        if o in spec.inputs:
            issues.append(spec.source.issue(f"output '{o}' is a graph input, not a node", ("outputs",),
                                            field="outputs"))
    if issues:
        raise SpecError(issues)
    _check_name_prefixes(spec)
    mg = ModelGraph(g, spec, order, list(spec.inputs), list(spec.outputs))
    if materialize:
        for name in mg.compute_nodes():
            d = g.nodes[name]
            try:
                d["block"] = d["block_cls"](d["params"], d["in_types"])
            except (OverflowError, MemoryError) as exc:  # a size derived from the parameters is too large for MLX
                field = max(_int_fields(d["params"]), key=lambda kv: kv[1], default=(None,))[0]
                raise SpecError(spec.node_issue(d["spec"], field, f"cannot create its parameters: {exc}",
                                                "lower the sizes or factors of this node")) from None
    return mg


def _check_overrides(spec: ExpandedSpec, node: ResolvedNode, cls) -> list[SpecIssue]:
    issues = []
    family = cls.kernel_family
    if node.kernel != "auto":
        choices = list(KERNEL_CHOICES) + [k.name for k in registered_kernels(family)] if family else []
        if family is None:
            issues.append(spec.node_issue(node, "kernel", f"block type '{node.type}' runs no kernel, so "
                                          f"'kernel: {node.kernel}' has no effect", "remove the kernel key"))
        elif node.kernel not in choices:
            issues.append(spec.node_issue(node, "kernel", f"unknown kernel '{node.kernel}'", did_you_mean(
                node.kernel, choices) or f"choose one of: {', '.join(choices)}"))
    if node.chunk_size is not None:
        if family is None:
            issues.append(spec.node_issue(node, "chunk_size", f"block type '{node.type}' is not chunked, so "
                                          "chunk_size has no effect", "remove chunk_size"))
        elif not isinstance(node.chunk_size, int) or not 1 <= node.chunk_size <= MAX_DIM:
            issues.append(spec.node_issue(node, "chunk_size", f"chunk_size must be a positive integer of at most "
                                          f"{MAX_DIM:,}, got {short_repr(node.chunk_size)}"))
    return issues


def _check_name_prefixes(spec: ExpandedSpec) -> None:
    names = sorted(n.name for n in spec.nodes)
    for a, b in zip(names, names[1:]):
        if b.startswith(a + "."):
            node = next(n for n in spec.nodes if n.name == b)
            raise SpecError(spec.node_issue(node, "name", f"node name '{b}' lies inside node '{a}', so their "
                                            f"parameter keys would collide",
                                            f"rename one of them; '{a}.*' is reserved for the parameters of '{a}'"))
