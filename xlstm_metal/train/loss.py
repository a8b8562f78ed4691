"""Next-token cross-entropy, optionally with the output head run in token chunks.

A step's float32 logits, their softmax and its gradient take 12 bytes per token per vocabulary entry (3.3 GB of
logits alone at batch 8 x 2048 with a 50k vocabulary). The chunked form runs the head and the loss of each chunk of
tokens under ``mx.checkpoint``: the backward recomputes that chunk's logits, so only the head's input is kept."""
from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from .data import IGNORE

AUTO_ABOVE = 1 << 30  # chunk (loss_chunk None) when a step's float32 logits would take more bytes than this
AUTO_CHUNK_BYTES = 1 << 28  # ... into chunks of about this many bytes of logits


def summed_cross_entropy(logits: mx.array, y: mx.array) -> mx.array:
    """The sum of the cross-entropy over the targets that carry loss (``IGNORE`` marks the others)."""
    counted = y != IGNORE
    ce = nn.losses.cross_entropy(logits.astype(mx.float32), mx.where(counted, y, 0), reduction="none")
    return mx.where(counted, ce, 0).sum()


def per_counted_target(total: mx.array, y: mx.array) -> mx.array:
    """``total`` divided by the number of targets that carry loss (at least 1)."""
    return total / mx.maximum((y != IGNORE).sum(), 1)


def mean_cross_entropy(logits: mx.array, y: mx.array) -> mx.array:
    """The mean cross-entropy over the targets that carry loss."""
    return per_counted_target(summed_cross_entropy(logits, y), y)


def loss_chunk_tokens(loss_chunk: int | None, tokens: int, vocab: int) -> int:
    """Tokens per head-and-loss chunk for a step of ``tokens`` targets (0: the whole step at once)."""
    if loss_chunk is None:
        return 0 if 4 * tokens * vocab <= AUTO_ABOVE else max(1, AUTO_CHUNK_BYTES // (4 * vocab))
    return 0 if loss_chunk >= tokens else loss_chunk


def chunked_head_loss(head, ctx, features: mx.array, y: mx.array, chunk: int) -> mx.array:
    """``mean_cross_entropy(head(features), y)`` computed ``chunk`` tokens at a time, each chunk recomputed in
    the backward; ``head`` is a position-wise block (its output at a token depends on that token's input only)."""
    def piece(targets):
        def loss(params, x):  # (the targets, integers, are no input: they have no gradient)
            head.update(params)
            logits, _ = head([x], None, ctx)
            return summed_cross_entropy(logits, targets)
        return mx.checkpoint(loss)

    params = head.trainable_parameters()
    x, t = features.reshape(1, -1, features.shape[-1]), y.reshape(1, -1)
    total = mx.array(0.0)
    for a in range(0, t.shape[1], chunk):
        total = total + piece(t[:, a:a + chunk])(params, x[:, a:a + chunk])
    return per_counted_target(total, y)
