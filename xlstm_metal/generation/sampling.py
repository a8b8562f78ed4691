"""Turning logits into tokens: temperature, top-k, top-p, min-p, repetition penalty — composable and seeded.

Randomness comes from explicit ``mx.random`` keys split per step, so a seed reproduces a generation exactly.
"""
from __future__ import annotations

from typing import Callable

import mlx.core as mx

from ..errors import InputError

Sampler = Callable[[mx.array, mx.array | None], mx.array]  # (logprobs [B, V], key) -> tokens [B]
LogitsProcessor = Callable[[mx.array, mx.array], mx.array]  # (tokens so far [B, T], logits [B, V]) -> logits


def _check(name: str, value, ok: bool, want: str) -> None:
    if not ok:
        raise InputError(f"{name} must be {want}, got {value!r}")


def make_sampler(temperature: float = 0.0, top_p: float = 1.0, top_k: int = 0, min_p: float = 0.0,
                 min_tokens_to_keep: int = 1) -> Sampler:
    """A sampler; ``temperature == 0`` is greedy (argmax) and ignores the other filters."""
    _check("temperature", temperature, temperature >= 0, ">= 0")
    _check("top_p", top_p, 0 < top_p <= 1, "in (0, 1]")
    _check("top_k", top_k, isinstance(top_k, int) and top_k >= 0, "an integer >= 0 (0 = off)")
    _check("min_p", min_p, 0 <= min_p < 1, "in [0, 1)")
    _check("min_tokens_to_keep", min_tokens_to_keep, min_tokens_to_keep >= 1, ">= 1")
    if temperature == 0:
        return lambda logprobs, key=None: mx.argmax(logprobs, axis=-1)

    def sample(logprobs: mx.array, key: mx.array | None = None) -> mx.array:
        lp = logprobs.astype(mx.float32)
        if top_k:
            lp = apply_top_k(lp, top_k)
        if min_p:
            lp = apply_min_p(lp, min_p, min_tokens_to_keep)
        if top_p < 1:
            lp = apply_top_p(lp, top_p, min_tokens_to_keep)
        return mx.random.categorical(lp / temperature, axis=-1, key=key)

    return sample


def apply_top_k(logprobs: mx.array, k: int) -> mx.array:
    V = logprobs.shape[-1]
    if k >= V:
        return logprobs
    kth = mx.sort(logprobs, axis=-1)[..., V - k][..., None]
    return mx.where(logprobs >= kth, logprobs, -mx.inf)


def apply_min_p(logprobs: mx.array, min_p: float, keep: int = 1) -> mx.array:
    """Drop tokens whose probability is below ``min_p`` times the most likely token's."""
    lp = logprobs - mx.logsumexp(logprobs, axis=-1, keepdims=True)
    threshold = mx.max(lp, axis=-1, keepdims=True) + mx.log(mx.array(min_p, mx.float32))
    kth = mx.sort(lp, axis=-1)[..., -keep][..., None]  # always keep the `keep` most likely
    return mx.where((lp >= threshold) | (lp >= kth), logprobs, -mx.inf)


def apply_top_p(logprobs: mx.array, top_p: float, keep: int = 1) -> mx.array:
    """Nucleus: keep the smallest set of most likely tokens whose probability sums to ``top_p``."""
    lp = logprobs - mx.logsumexp(logprobs, axis=-1, keepdims=True)
    order = mx.argsort(-lp, axis=-1)
    sorted_p = mx.exp(mx.take_along_axis(lp, order, axis=-1))
    before = mx.cumsum(sorted_p, axis=-1) - sorted_p  # mass strictly before each token
    rank = mx.arange(lp.shape[-1])
    keep_sorted = (before < top_p) | (rank < keep)
    keep_mask = mx.put_along_axis(mx.zeros(lp.shape, mx.bool_), order, keep_sorted, axis=-1)
    return mx.where(keep_mask, logprobs, -mx.inf)


def make_logits_processors(repetition_penalty: float | None = None,
                           repetition_context_size: int = 20) -> list[LogitsProcessor]:
    processors: list[LogitsProcessor] = []
    if repetition_penalty is not None and repetition_penalty != 1.0:
        _check("repetition_penalty", repetition_penalty, repetition_penalty > 0, "> 0")
        _check("repetition_context_size", repetition_context_size, repetition_context_size >= 1, ">= 1")

        def penalize(tokens: mx.array, logits: mx.array) -> mx.array:
            """CTRL-style: recent tokens' positive logits are divided, negative ones multiplied."""
            recent = tokens[:, -repetition_context_size:]
            if recent.shape[1] == 0:
                return logits
            picked = mx.take_along_axis(logits, recent, axis=-1)
            picked = mx.where(picked > 0, picked / repetition_penalty, picked * repetition_penalty)
            return mx.put_along_axis(logits, recent, picked, axis=-1)

        processors.append(penalize)
    return processors
