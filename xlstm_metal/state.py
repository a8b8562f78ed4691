"""Recurrent state as a value: each stateful node's arrays (``C``, ``n``, ``m`` for mLSTM), to keep, resume from,
fork, save and load. MLX arrays are immutable, so forking is free and a call never modifies the state it is given."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlx.core as mx

from .errors import InputError, shown
from .files import atomic_write
from .fingerprint import architecture, describe, same
from .tensorfile import FLOAT_DTYPES, read_header

FORMAT = "xlstm_metal.state/1"


class StateError(InputError):
    """A state file is damaged, partial, or belongs to another architecture; the message names the file."""


@dataclass
class State:
    entries: dict[str, tuple[mx.array, ...]] = field(default_factory=dict)
    tokens_seen: int = 0  # how many positions have been consumed (for information)
    metadata: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, node: str):
        return self.entries[node]

    def get(self, node: str, default=None):
        return self.entries.get(node, default)

    def __contains__(self, node: str) -> bool:
        return node in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def batch_size(self) -> int | None:
        for arrays in self.entries.values():
            for a in arrays:
                return int(a.shape[0])
        return None

    def fork(self) -> "State":
        """An independent copy (cheap: arrays are immutable)."""
        return State(dict(self.entries), self.tokens_seen, dict(self.metadata))

    def select(self, rows) -> "State":
        """The state of some batch rows, e.g. ``state.select([1])``."""
        idx = rows if isinstance(rows, mx.array) else mx.array(list(rows))
        entries = {k: tuple(a[idx] for a in v) for k, v in self.entries.items()}
        return State(entries, self.tokens_seen, dict(self.metadata))

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for v in self.entries.values() for a in v)

    def arrays(self) -> list[mx.array]:
        return [a for v in self.entries.values() for a in v]

    def checked_for(self, graph, source: str = "the state") -> "State":
        """This state, refused with a ``StateError`` if it belongs to another architecture than ``graph`` or holds
        only some of its stateful nodes, and stamped with ``graph``'s architecture (which ``save`` records)."""
        ours, theirs = architecture(graph), self.metadata.get("architecture")
        if same(theirs, ours):  # stamped by this architecture: checked when it was made (the per-token path)
            return self
        if theirs is not None:
            raise StateError(f"{source} belongs to {describe(theirs)}, but "
                             f"the model is {describe(ours)}; use a state saved from this model")
        if self.entries:
            self._check_nodes(graph, source)
        return State(self.entries, self.tokens_seen, dict(self.metadata, architecture=ours))

    def _check_nodes(self, graph, source) -> None:
        want = set(graph.stateful_nodes())
        if set(self.entries) != want:
            missing, extra = sorted(want - set(self.entries)), sorted(set(self.entries) - want)
            raise StateError(f"{source} does not fit the model {describe(architecture(graph))}: "
                             + "; ".join(f"{what}: {', '.join(map(shown, names[:5]))}" for what, names in
                                         (("nodes missing", missing), ("unknown nodes", extra)) if names))

    def save(self, path: str | Path) -> None:
        """Write to a safetensors file (keys ``<node>.<k>``), atomically under a unique temporary name; metadata
        keeps node order and counts, and (in ``metadata``) the architecture the state belongs to."""
        flat = {f"{node}.{k}": a for node, arrays in self.entries.items() for k, a in enumerate(arrays)}
        meta = {"format": FORMAT, "nodes": json.dumps({n: len(v) for n, v in self.entries.items()}),
                "tokens_seen": str(self.tokens_seen), "metadata": json.dumps(self.metadata)}
        atomic_write(path, lambda tmp: mx.save_safetensors(str(tmp), flat, metadata=meta), suffix=".safetensors")

    @classmethod
    def load(cls, path: str | Path, graph=None) -> "State":
        """Read a state file, checked completely; with ``graph`` also that it belongs to that architecture and
        fits its nodes' state shapes. Every problem is a one-line ``StateError`` naming the file."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no state file at {path}")
        header = read_header(path, StateError)
        meta = header.get("__metadata__") or {}
        if meta.get("format") != FORMAT:
            raise StateError(f"{path} is not an xlstm_metal state file "
                             f"(format {meta.get('format')!r}, expected {FORMAT!r})")
        nodes, metadata = _json(path, meta, "nodes"), _json(path, meta, "metadata", "{}")
        if not isinstance(nodes, dict) or not all(isinstance(n, str) and isinstance(c, int) and not isinstance(c, bool)
                                                  and 0 < c < 64 for n, c in nodes.items()):
            raise StateError(f"{path} metadata 'nodes' must map node names to array counts")
        if not isinstance(metadata, dict):
            raise StateError(f"{path} metadata 'metadata' must be a JSON object")
        tokens_seen = meta.get("tokens_seen", "0")
        if not tokens_seen.isdigit():
            raise StateError(f"{path} metadata 'tokens_seen' = {tokens_seen!r}: must be a non-negative integer")
        keys = {f"{n}.{k}" for n, count in nodes.items() for k in range(count)}
        stored = set(header) - {"__metadata__"}
        if keys != stored:
            gone, extra = sorted(keys - stored), sorted(stored - keys)
            raise StateError(f"{path} is partial or damaged: " + "; ".join(
                f"{what}: {', '.join(map(shown, names[:5]))}" for what, names in (("arrays missing", gone),
                                                                       ("unknown arrays", extra)) if names))
        for key in sorted(keys):
            if header[key]["dtype"] not in FLOAT_DTYPES:
                raise StateError(f"{path} array '{shown(key)}' is {header[key]['dtype']}; a state holds float arrays")
        arrays = mx.load(str(path))
        for key in sorted(keys):
            if not mx.all(mx.isfinite(arrays[key])).item():
                raise StateError(f"{path} array '{shown(key)}' holds NaN or Inf values; the state is damaged")
        entries = {n: tuple(arrays[f"{n}.{k}"] for k in range(count)) for n, count in nodes.items()}
        state = cls(entries, int(tokens_seen), metadata)
        if graph is not None:
            state = state.checked_for(graph, source=str(path))
            state._check_nodes(graph, path)
            state._check_shapes(graph, path)
        return state

    def _check_shapes(self, graph, path: Path) -> None:
        batch = self.batch_size or 1
        for node, arrays in self.entries.items():
            want = graph.block(node).init_state(batch)
            if len(arrays) != len(want) or any(tuple(a.shape) != tuple(w.shape) for a, w in zip(arrays, want)):
                got, need = [tuple(a.shape) for a in arrays], [tuple(w.shape) for w in want]
                raise StateError(f"{path} node '{shown(node)}' holds arrays of shapes {got}, but the model's state "
                                 f"there is {need}; use a state saved from this model")


def _json(path: Path, meta: dict, key: str, default: str | None = None):
    text = meta.get(key, default)
    if text is None:
        raise StateError(f"{path} metadata lacks '{key}'")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise StateError(f"{path} metadata '{key}' is not valid JSON: {exc}") from None
