"""An architecture's identity, recorded in files that only make sense for it (state files, training runs): its
name and a hash of every node's type, inputs and parameters. Execution choices (kernel, chunk size) are left out:
they change how a model runs, not what its weights and recurrent state mean."""
from __future__ import annotations

import hashlib
import json

from .errors import shown

EXECUTION_CHOICES = {"kernel", "chunk_size"}


def architecture(graph) -> dict[str, str]:
    """``{"name": ..., "fingerprint": ...}`` of a ``ModelGraph`` (computed once per graph)."""
    cached = graph.__dict__.get("_architecture")
    if cached is None:
        nodes = []
        for n in graph.compute_nodes():
            data = graph.node(n)
            params = data["params"].model_dump() if hasattr(data.get("params"), "model_dump") else {}
            params = {k: v for k, v in params.items() if k not in EXECUTION_CHOICES}
            nodes.append([n, data.get("type"), list(data["spec"].inputs), params])
        text = json.dumps([nodes, list(graph.outputs)], sort_keys=True, default=str)
        cached = {"name": graph.name, "fingerprint": hashlib.sha256(text.encode()).hexdigest()[:16]}
        graph.__dict__["_architecture"] = cached
    return dict(cached)


def same(recorded, arch: dict) -> bool:
    """Whether a recorded architecture is ``arch``: the fingerprints decide (a name is a label, e.g. a directory's)."""
    return isinstance(recorded, dict) and recorded.get("fingerprint") == arch["fingerprint"]


def describe(arch) -> str:
    """How an architecture (``architecture()``'s dict, or whatever a file recorded) is named in messages."""
    if not isinstance(arch, dict):
        return f"an unknown architecture ({shown(arch)})"
    return f"'{shown(arch.get('name'))}' (architecture {shown(arch.get('fingerprint'))})"
