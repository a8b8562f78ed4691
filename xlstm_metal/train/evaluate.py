"""The loss of a model on a token stream, in windows like those it was trained on (each from a fresh state)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn
import numpy as np


@dataclass
class TextLoss:
    tokens: int  # in the stream
    predicted: int  # tokens whose loss was measured (each window's first token has no context to be predicted from)
    characters: int
    loss: float  # mean cross-entropy per predicted token, in nats

    @property
    def bits_per_character(self) -> float:
        """The loss as the tokenizer does not change it: nats per token x tokens per character, in bits."""
        return self.loss * self.tokens / max(1, self.characters) / math.log(2)

    def as_dict(self) -> dict:
        return {"tokens": self.tokens, "predicted": self.predicted, "characters": self.characters,
                "loss": self.loss, "bits_per_character": self.bits_per_character}


def stream_loss(runner, ids: np.ndarray, characters: int, seq_len: int = 256, batch_size: int = 16) -> TextLoss:
    """Mean next-token loss over ``ids`` cut into consecutive windows of ``seq_len + 1`` tokens (overlapping by one:
    every token but the first is predicted once); the last, shorter window is measured on its own."""
    starts = list(range(0, max(1, len(ids) - 1), seq_len))
    total, predicted = 0.0, 0
    full = [s for s in starts if s + seq_len + 1 <= len(ids)]
    groups = [full[i:i + batch_size] for i in range(0, len(full), batch_size)]
    groups += [[s] for s in starts if s + seq_len + 1 > len(ids) and len(ids) - s >= 2]
    for group in groups:
        n = min(seq_len, len(ids) - group[0] - 1)
        window = np.stack([ids[s:s + n + 1] for s in group])
        logits, _ = runner(window[:, :-1])
        loss = nn.losses.cross_entropy(logits.astype(mx.float32), mx.array(window[:, 1:]), reduction="sum")
        total += float(loss.item())
        predicted += window.shape[0] * n
    return TextLoss(tokens=int(len(ids)), predicted=predicted, characters=characters,
                    loss=total / max(1, predicted))
