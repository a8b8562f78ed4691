"""The package's modules import each other without cycles, and kernels never import blocks or the layers above.

Imports inside functions count too: a cycle hidden in a function still ties two modules together."""
import ast
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parent.parent
SOURCES = {"xlstm_metal": ROOT / "xlstm_metal", "xlstm_metal.blocks": ROOT / "blocks",
           "xlstm_metal.kernels": ROOT / "kernels"}


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in SOURCES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


def import_graph() -> nx.DiGraph:
    mods = modules()
    graph = nx.DiGraph()
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = ".".join(filter(None, [base if node.level else "", node.module or ""]))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in mods:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph.add_edge(name, target)
    return graph


def test_no_module_imports_itself_through_others():
    cycles = [sorted(c) for c in nx.strongly_connected_components(import_graph()) if len(c) > 1]
    assert not cycles, f"import cycles: {cycles}"


def test_kernels_import_only_kernels_and_the_neutral_modes_module():
    graph = import_graph()
    wrong = [(a, b) for a, b in graph.edges if a.startswith("xlstm_metal.kernels")
             and not b.startswith("xlstm_metal.kernels") and b != "xlstm_metal.modes"]
    assert not wrong, wrong


def test_the_graph_sees_the_layers():  # the check above would pass vacuously on an empty graph
    graph = import_graph()
    assert graph.has_edge("xlstm_metal.runner", "xlstm_metal.plan")
    assert graph.has_edge("xlstm_metal.kernels.mlstm.tc_chunkwise", "xlstm_metal.kernels.gpu")
