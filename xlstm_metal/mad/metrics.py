"""MAD accuracy as mad-lab reports it (``mad/metrics.py``: torchmetrics ``MulticlassAccuracy``, macro average,
ignore index -100, computed per evaluation batch and averaged over the batches weighted by their size)."""
from __future__ import annotations

import numpy as np

from .tasks import IGNORE


def macro_accuracy(pred: np.ndarray, target: np.ndarray, vocab_size: int) -> float:
    """The mean over classes of each class's recall at scored positions; a class counts when it occurs as a
    target or a prediction there (a class only ever predicted scores 0)."""
    keep = target != IGNORE
    p, t = pred[keep].astype(np.int64), target[keep].astype(np.int64)
    if not t.size:
        return 0.0
    support = np.bincount(t, minlength=vocab_size)
    hits = np.bincount(t[p == t], minlength=vocab_size)
    seen = (support + np.bincount(p, minlength=vocab_size)) > 0
    recall = np.divide(hits, support, out=np.zeros(vocab_size), where=support > 0)
    return float(recall[seen].mean())


def mad_accuracy(pred: np.ndarray, target: np.ndarray, vocab_size: int, batch_size: int = 128) -> float:
    """``macro_accuracy`` per batch of ``batch_size`` examples, averaged weighted by batch size."""
    values, weights = [], []
    for a in range(0, len(pred), batch_size):
        values.append(macro_accuracy(pred[a:a + batch_size], target[a:a + batch_size], vocab_size))
        weights.append(len(pred[a:a + batch_size]))
    return float(np.average(values, weights=weights)) if values else 0.0


def token_accuracy(pred: np.ndarray, target: np.ndarray) -> float:
    """The fraction of scored positions predicted exactly."""
    keep = target != IGNORE
    return float((pred[keep] == target[keep]).mean()) if keep.any() else 0.0
