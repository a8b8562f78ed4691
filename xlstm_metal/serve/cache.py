"""The session state cache: recurrent states keyed by the token prefix they have read, in an LRU bounded by bytes.

A recurrent state has a fixed size whatever the length of the text it read, so a conversation costs the same
memory at turn 100 as at turn 1; a request whose prompt extends a cached prefix resumes from that state."""
from __future__ import annotations

from collections import OrderedDict
from typing import Sequence


class StateCache:
    """``put(tokens, state)``, ``longest_prefix(tokens) -> (length, state)``; least recently used go first."""

    def __init__(self, max_bytes: int):
        self.max_bytes = int(max_bytes)
        self._entries: OrderedDict[tuple[int, ...], object] = OrderedDict()
        self.nbytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, tokens: Sequence[int], state) -> None:
        key = tuple(int(t) for t in tokens)
        size = int(state.nbytes)
        if not key or size > self.max_bytes:
            return
        if key in self._entries:
            self.nbytes -= int(self._entries.pop(key).nbytes)
        self._entries[key] = state
        self.nbytes += size
        while self.nbytes > self.max_bytes:
            _, old = self._entries.popitem(last=False)
            self.nbytes -= int(old.nbytes)

    def longest_prefix(self, tokens: Sequence[int]) -> tuple[int, object | None]:
        """The longest cached key that is a proper prefix of ``tokens`` (at least one token stays to be read, so
        the model has logits to sample from) and its state; ``(0, None)`` when none is."""
        tokens = tuple(int(t) for t in tokens)
        best, state = 0, None
        for key, value in self._entries.items():
            n = len(key)
            if best < n < len(tokens) and tokens[:n] == key:
                best, state = n, value
        if state is not None:
            self._entries.move_to_end(tokens[:best])
        return best, state
