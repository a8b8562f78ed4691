"""Token ids as the model's input: shape and range are checked before MLX sees them (an id outside the embedding
table would read outside its memory: a wrong answer or a crash), with one reduction, not a Python loop per token."""
from __future__ import annotations

from typing import Any

import mlx.core as mx
import numpy as np

from .errors import InputError


INT32_END = 2 ** 31  # ids are int32 on the way into MLX


class TokenIdError(InputError):
    """Token ids that are not a ``[seq_len]`` / ``[batch, seq_len]`` array of integers in ``[0, vocab)``."""


def input_vocab(graph) -> int | None:
    """How many token ids the model accepts: the smallest embedding table reading a graph input (None: no table)."""
    sizes = [getattr(graph.node(n)["params"], "num_embeddings", None) for n in graph.compute_nodes()
             if set(graph.node(n)["spec"].inputs) & set(graph.inputs)]
    sizes = [s for s in sizes if s]
    return min(sizes) if sizes else None


def check_token_range(tokens: Any, vocab: int | None, what: str = "token ids") -> None:
    """Refuse ids below 0 or at/above ``vocab`` (one min/max reduction; ``vocab`` None: any int32 id >= 0)."""
    if isinstance(tokens, mx.array):
        if tokens.size == 0:
            return
        lo, hi = (int(v) for v in mx.stack([mx.min(tokens), mx.max(tokens)]).astype(mx.int64).tolist())
    else:
        arr = np.asarray(tokens)
        if arr.size == 0:
            return
        lo, hi = int(arr.min()), int(arr.max())
    limit = f"[0, {vocab - 1}] (the model's vocabulary has {vocab} tokens)" if vocab else f"[0, {INT32_END - 1}]"
    if lo < 0 or hi >= (vocab or INT32_END):
        raise TokenIdError(f"{what}: id {lo if lo < 0 else hi} is outside {limit}")


def as_tokens(tokens: Any, vocab: int | None = None, what: str = "token ids") -> mx.array:
    """Token ids as an int32 ``[B, S]`` array (a flat list or 1-D array is one sequence), range-checked."""
    if isinstance(tokens, mx.array):
        if not (mx.issubdtype(tokens.dtype, mx.integer) or tokens.dtype == mx.bool_):
            raise TokenIdError(f"{what} must be integers, got an array of {tokens.dtype}")
        arr = tokens
    else:
        try:
            raw = np.asarray(tokens)
        except (ValueError, TypeError) as exc:
            raise TokenIdError(f"{what} must be a list of integers or a [batch, seq_len] array: {exc}") from None
        if raw.size and raw.dtype.kind not in "iub":  # (object: ints too large for 64 bits, or ragged rows)
            raise TokenIdError(f"{what} must be integers in [0, vocab) in rows of one length, got {raw.dtype} values")
        arr = raw.astype(np.int64)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2:
        raise TokenIdError(f"{what} must be [seq_len] or [batch, seq_len], got shape {tuple(arr.shape)}")
    if arr.shape[1] == 0:
        raise TokenIdError(f"{what} is empty: give at least one token")
    check_token_range(arr, vocab, what)
    return arr.astype(mx.int32) if isinstance(arr, mx.array) else mx.array(arr.astype(np.int32))
