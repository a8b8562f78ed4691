"""The model as the server uses it: prompts encoded and checked, read into a state, and one forward step.

Only the scheduler's thread calls ``read`` and ``forward`` (MLX work stays on one thread)."""
from __future__ import annotations

import mlx.core as mx

from ..modes import inference_mode

from .cache import StateCache
from .errors import APIError


class Engine:
    """A runner with a session state cache; ``max_prompt_tokens`` bounds a prompt."""

    def __init__(self, runner, cache: StateCache, *, model_id: str, max_prompt_tokens: int):
        self.runner, self.cache, self.model_id = runner, cache, model_id
        self.max_prompt_tokens = int(max_prompt_tokens)
        self._model_fn = runner._model_fn()  # what generation calls: the same numbers as a request served alone

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

    def read(self, tokens: list[int], state):
        """The state after reading ``tokens`` from ``state`` (None: a fresh one)."""
        with inference_mode():  # (nothing here is differentiated: the fused kernels run bare, as in generation)
            return self.runner.prefill(tokens, state)

    def forward(self, tokens: mx.array, state) -> tuple[mx.array, object]:
        """Next-token logits ``[B, V]`` after ``tokens`` ``[B, 1]``, and the state. Sampled tokens come from the
        model's own logits, so after the first call (a prompt token, checked) they skip the vocabulary check."""
        with inference_mode():
            logits, state = self._model_fn(tokens, state)
        return logits[:, -1, :], state
