"""The running batch: one row per answer being generated, their recurrent states stacked along the batch axis.

Each row keeps its own sampling (temperature, top_p, a seeded key split per token exactly as ``generate_step``
splits it), its own stop strings and token budget, so a row's answer is the one it would get alone. Rows join
after their prompt is read and leave when they finish, without disturbing the others."""
from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field

import mlx.core as mx

from ..generation.generate import TextStream
from ..generation.sampling import make_sampler
from ..state import State


@dataclass
class Row:
    """One answer (choice ``index`` of request ``job``) being generated."""
    job: object
    index: int
    max_tokens: int
    temperature: float
    top_p: float
    text: TextStream
    seed: int | None = None
    tokens: list[int] = field(default_factory=list)
    finish: str | None = None

    def __post_init__(self):
        self.greedy = self.temperature == 0
        self.sampler = make_sampler(self.temperature, self.top_p)
        self.key = mx.random.key(self.seed if self.seed is not None else secrets.randbits(31))

    def sample(self, logprobs: mx.array) -> mx.array:
        """This row's next token from its ``[1, V]`` log-probabilities."""
        if self.greedy:
            return mx.argmax(logprobs, axis=-1)
        self.key, sub = mx.random.split(self.key)
        return self.sampler(logprobs, sub)

    def add(self, token: int, deadline: float | None) -> tuple[str, str | None]:
        """Take a sampled token: the text to send and the finish reason (past ``deadline`` the answer ends)."""
        self.tokens.append(token)
        last = len(self.tokens) >= self.max_tokens or (deadline is not None and time.monotonic() > deadline)
        piece, self.finish = self.text.add(token, last=last)
        return piece, self.finish


def stack(states: list[State]) -> State:
    """States of batches stacked along the batch axis (node by node, array by array)."""
    if len(states) == 1:
        return states[0]
    first = states[0]
    entries = {node: tuple(mx.concatenate([s.entries[node][k] for s in states], axis=0)
                           for k in range(len(arrays))) for node, arrays in first.entries.items()}
    return State(entries, 0, dict(first.metadata))


class Batch:
    """Rows decoding together: ``join`` rows with their states and first logits, ``step`` samples every row's token
    and queues the next forward pass, ``keep`` drops the rows that left."""

    def __init__(self, forward):
        self.forward = forward  # (tokens [B, 1], state) -> (logits [B, V], state)
        self.rows: list[Row] = []
        self.state: State | None = None
        self.logits: mx.array | None = None  # [B, V]: each row's next-token logits

    def __len__(self) -> int:
        return len(self.rows)

    def join(self, rows: list[Row], state: State, logits: mx.array) -> None:
        """Add ``rows`` whose state (batch ``len(rows)``) has read their prompt; ``logits`` [len(rows), V]."""
        if not self.rows:
            self.rows, self.state, self.logits = list(rows), state, logits
            return
        self.rows += rows
        self.state = stack([self.state, state])
        self.logits = mx.concatenate([self.logits, logits], axis=0)

    def step(self) -> list[int]:
        """Every row's next token. The forward pass over those tokens is queued before they are read, so the
        device computes it while the host hands out text (rows that finish on these tokens leave after it, their
        state then holds their whole answer)."""
        lp = self.logits.astype(mx.float32)
        lp = lp - mx.logsumexp(lp, axis=-1, keepdims=True)
        if all(r.greedy for r in self.rows):
            tokens = mx.argmax(lp, axis=-1)
        else:
            tokens = mx.concatenate([r.sample(lp[i:i + 1]) for i, r in enumerate(self.rows)])
        tokens = tokens.astype(mx.int32)
        self.logits, self.state = self.forward(tokens[:, None], self.state)
        mx.async_eval(tokens, self.logits, *self.state.arrays())
        return tokens.tolist()

    def keep(self, rows: list[int]) -> None:
        """Keep only the rows at these positions (their state and logits)."""
        if len(rows) == len(self.rows):
            return
        if not rows:
            self.rows, self.state, self.logits = [], None, None
            return
        idx = mx.array(rows)
        self.rows = [self.rows[i] for i in rows]
        self.state = self.state.select(idx)
        self.logits = self.logits[idx]

    def row_state(self, i: int) -> State:
        """Row ``i``'s state alone, evaluated (so it holds no reference to the whole batch's arrays)."""
        state = self.state.select([i])
        mx.eval(state.arrays())
        return state
