"""One completion: resume from the longest cached prefix, prefill only the new tokens, generate, cache the states.

The runner is driven from one worker thread (MLX work stays on one thread); requests take turns behind a lock."""
from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import Iterator

from .cache import StateCache
from .errors import APIError
from .params import Sampling

log = logging.getLogger("xlstm_metal.serve")


@dataclass
class Piece:
    """A piece of generated text; the last piece has ``finish_reason`` and the usage counts."""
    text: str
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0


class Engine:
    """Completions over a runner with a session state cache; ``max_prompt_tokens`` bounds a prompt."""

    def __init__(self, runner, cache: StateCache, *, model_id: str, max_prompt_tokens: int):
        self.runner, self.cache, self.model_id = runner, cache, model_id
        self.max_prompt_tokens = int(max_prompt_tokens)

    def encode(self, prompt: str | list[int], *, add_bos: bool | None = None) -> list[int]:
        tok = self.runner.tokenizer
        if isinstance(prompt, str):
            if tok is None:
                raise APIError("this model has no tokenizer: give the prompt as token ids", param="prompt")
            ids = tok.encode(prompt, add_bos=add_bos)
        else:
            vocab = self.runner.vocab_size
            bad = next((t for t in prompt if t < 0 or (vocab is not None and t >= vocab)), None)
            if bad is not None:
                raise APIError(f"prompt token id {bad} is outside the vocabulary [0, {vocab})", param="prompt")
            ids = list(prompt)
        if not ids:
            raise APIError("the prompt is empty after tokenization", param="prompt")
        if len(ids) > self.max_prompt_tokens:
            raise APIError(f"the prompt has {len(ids)} tokens, more than this server's limit of "
                           f"{self.max_prompt_tokens}", param="messages", code="context_length_exceeded")
        return ids

    def complete(self, ids: list[int], sampling: Sampling, stop: list[str] = (), *,
                 request_id: str | None = None, deadline: float | None = None) -> Iterator[Piece]:
        """Pieces of text for prompt ``ids`` (past ``deadline``, a ``time.monotonic()`` value, the answer ends there
        with finish reason "length"); after the last one the cache holds the state after the prompt and the
        state after prompt + generated tokens (the next turn of a conversation extends one of them)."""
        request_id = request_id or uuid.uuid4().hex
        t0 = time.perf_counter()
        cached, state = self.cache.longest_prefix(ids)
        new = ids[cached:]
        generated: list[int] = []
        last = None
        kw = dict(max_tokens=sampling.max_tokens, temperature=sampling.temperature, top_p=sampling.top_p,
                  seed=sampling.seed, stop=list(sampling.stop) + list(stop))
        if len(new) > 1:  # read all but the last new token, keep that state (the prompt's prefix) for reuse
            state = self.runner.prefill(new[:-1], state)
            self.cache.put(ids[:-1], state)
            new = new[-1:]
        for last in self.runner.stream(new, state=state, **kw):
            generated.append(last.token)
            yield Piece(last.text, last.finish_reason, len(ids), len(generated), cached)
            if last.finish_reason is None and deadline is not None and time.monotonic() > deadline:
                yield Piece("", "length", len(ids), len(generated), cached)
                break
        if last is not None:
            self.cache.put(ids + generated, last.state)
        seconds = time.perf_counter() - t0
        log.info("request %s: %d prompt tokens (%d cached), %d generated, %.1f tok/s, %.2f s, cache %d states "
                 "%.1f MB", request_id, len(ids), cached, len(generated), len(generated) / max(seconds, 1e-9),
                 seconds, len(self.cache), self.cache.nbytes / 1e6)
