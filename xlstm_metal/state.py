"""Recurrent state as a value: each stateful node's arrays (``C``, ``n``, ``m`` for mLSTM), to keep, resume from,
fork, save and load. MLX arrays are immutable, so forking is free and a call never modifies the state it is given."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlx.core as mx

FORMAT = "xlstm_metal.state/1"


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

    def save(self, path: str | Path) -> None:
        """Write to a safetensors file (keys ``<node>.<k>``); metadata keeps node order and counts."""
        flat = {f"{node}.{k}": a for node, arrays in self.entries.items() for k, a in enumerate(arrays)}
        meta = {"format": FORMAT, "nodes": json.dumps({n: len(v) for n, v in self.entries.items()}),
                "tokens_seen": str(self.tokens_seen), "metadata": json.dumps(self.metadata)}
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp.safetensors")
        mx.save_safetensors(str(tmp), flat, metadata=meta)
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> "State":
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no state file at {path}")
        arrays, meta = mx.load(str(path), return_metadata=True)
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path} is not an xlstm_metal state file "
                             f"(format {meta.get('format')!r}, expected {FORMAT!r})")
        nodes = json.loads(meta["nodes"])
        entries = {n: tuple(arrays[f"{n}.{k}"] for k in range(count)) for n, count in nodes.items()}
        return cls(entries, int(meta.get("tokens_seen", 0)), json.loads(meta.get("metadata", "{}")))
