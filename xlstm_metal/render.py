"""Pictures of a graph or plan: Mermaid (renders on GitHub) and Graphviz dot."""
from __future__ import annotations

import re

from .graph import ModelGraph
from .plan import ExecutionPlan


def _ident(name: str) -> str:
    return "n_" + re.sub(r"[^A-Za-z0-9_]", "_", name)


def _label(graph: ModelGraph, name: str, plan: ExecutionPlan | None) -> str:
    data = graph.node(name)
    kind = data.get("type", "input")
    text = f"{name}<br/>{kind} {data['out_type']}"
    if plan is not None and name not in graph.inputs:
        step = plan.step(name)
        if step.kernel:
            text += f"<br/>{step.kernel.name}" + (f" L={step.chunk_size}" if step.chunk_size else "")
    return text


def to_mermaid(graph: ModelGraph, plan: ExecutionPlan | None = None) -> str:
    lines = ["flowchart TD"]
    for n in graph.order:
        shape = ('(["', '"])') if n in graph.inputs or n in graph.outputs else ('["', '"]')
        lines.append(f"    {_ident(n)}{shape[0]}{_label(graph, n, plan)}{shape[1]}")
    for u, v in graph.graph.edges:
        lines.append(f"    {_ident(u)} --> {_ident(v)}")
    return "\n".join(lines) + "\n"


def to_dot(graph: ModelGraph, plan: ExecutionPlan | None = None) -> str:
    lines = [f'digraph "{graph.name}" {{', "    rankdir=TB;", '    node [shape=box, fontname="Helvetica"];']
    for n in graph.order:
        label = _label(graph, n, plan).replace("<br/>", "\\n").replace('"', '\\"')
        shape = ", shape=ellipse" if n in graph.inputs or n in graph.outputs else ""
        lines.append(f'    {_ident(n)} [label="{label}"{shape}];')
    for u, v in graph.graph.edges:
        lines.append(f"    {_ident(u)} -> {_ident(v)};")
    lines.append("}")
    return "\n".join(lines) + "\n"
