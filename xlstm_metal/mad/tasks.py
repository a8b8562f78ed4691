"""The MAD synthetic tasks (Poli et al., 2024, "Mechanistic Design and Scaling of Hybrid Architectures").

Each seeded numpy generator returns ``(inputs, targets)`` int arrays ``[n, seq_len]``; ``targets[t]`` is the token
to predict after reading ``inputs[:t+1]``, or -1 where nothing is scored. Defaults: the paper's small settings.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

IGNORE = -1


@dataclass(frozen=True)
class Task:
    name: str
    make: Callable[..., tuple[np.ndarray, np.ndarray]]
    vocab_size: int
    seq_len: int
    doc: str


def _recall_sequence(rng, seq_len, n_keys, n_values, key_len=1, val_len=1, noise_p=0.0, noise_base=0, n_noise=0):
    """k v k v ... with a per-sequence mapping; values are scored after a key seen before."""
    key_ids = [tuple(rng.integers(0, n_keys, size=key_len)) for _ in range(max(2, n_keys))]
    mapping = {k: tuple(n_keys + rng.integers(0, n_values, size=val_len)) for k in key_ids}
    x, y, seen = [], [], set()
    while len(x) < seq_len:
        if noise_p and rng.random() < noise_p:
            x.append(noise_base + int(rng.integers(0, n_noise)))
            y.append(IGNORE)
            continue
        k = key_ids[int(rng.integers(0, len(key_ids)))]
        v = mapping[k]
        x.extend(int(t) for t in k)
        y.extend([IGNORE] * (len(k) - 1))
        y.append(int(v[0]) if k in seen else IGNORE)  # after the key's last token: the value's first token
        x.extend(int(t) for t in v)
        y.extend([int(t) if k in seen else IGNORE for t in v[1:]] + [IGNORE])
        seen.add(k)
    return x[:seq_len], y[:seq_len]


def _recall_batch(n, seed, seq_len, *args, **kw):
    rng = np.random.default_rng(seed)
    x, y = zip(*(_recall_sequence(rng, seq_len, *args, **kw) for _ in range(n)))
    return np.array(x), np.array(y)


def in_context_recall(n, seq_len=128, vocab_size=16, seed=0):
    return _recall_batch(n, seed, seq_len, vocab_size // 2, vocab_size - vocab_size // 2)


def noisy_in_context_recall(n, seq_len=128, vocab_size=16, noise_vocab=4, noise_p=0.2, seed=0):
    kv = vocab_size - noise_vocab
    return _recall_batch(n, seed, seq_len, kv // 2, kv - kv // 2, noise_p=noise_p, noise_base=kv, n_noise=noise_vocab)


def fuzzy_in_context_recall(n, seq_len=128, vocab_size=16, key_len=2, val_len=2, seed=0):
    return _recall_batch(n, seed, seq_len, 4, vocab_size - 4, key_len=key_len, val_len=val_len)


def selective_copying(n, seq_len=96, vocab_size=16, n_copy=8, seed=0):
    """Tokens scattered among blanks; after the separator, reproduce them in order."""
    rng = np.random.default_rng(seed)
    blank, sep = vocab_size - 2, vocab_size - 1
    pre = seq_len - n_copy
    xs, ys = [], []
    for _ in range(n):
        toks = rng.integers(0, vocab_size - 2, size=n_copy)
        where = np.sort(rng.choice(pre - 1, size=n_copy, replace=False))
        x = np.full(seq_len, blank)
        x[where] = toks
        x[pre - 1] = sep
        x[pre:] = toks  # teacher forcing: the copy is fed back in
        y = np.full(seq_len, IGNORE)
        y[pre - 1:seq_len - 1] = toks
        xs.append(x)
        ys.append(y)
    return np.array(xs), np.array(ys)


def compression(n, seq_len=32, vocab_size=16, seed=0):
    """A sequence, a compression token, then the sequence again from memory."""
    rng = np.random.default_rng(seed)
    L = (seq_len - 1) // 2
    comp = vocab_size - 1
    xs, ys = [], []
    for _ in range(n):
        toks = rng.integers(0, vocab_size - 1, size=L)
        x = np.concatenate([toks, [comp], toks])[:seq_len]
        y = np.full(len(x), IGNORE)
        y[L:2 * L] = toks
        pad = seq_len - len(x)
        xs.append(np.pad(x, (0, pad), constant_values=comp))
        ys.append(np.pad(y, (0, pad), constant_values=IGNORE))
    return np.array(xs), np.array(ys)


def memorization(n, seq_len=32, vocab_size=256, n_facts=None, seed=0, fact_seed=1234):
    """A fixed key→value table shared by all sequences (facts to store in the weights)."""
    n_keys = vocab_size // 2
    table = np.random.default_rng(fact_seed).integers(n_keys, vocab_size, size=n_keys)
    rng = np.random.default_rng(seed)
    keys = rng.integers(0, n_facts or n_keys, size=(n, seq_len // 2))
    x = np.stack([keys, table[keys]], axis=-1).reshape(n, -1)
    y = np.full_like(x, IGNORE)
    y[:, 0::2] = table[keys]
    return x, y


TASKS: dict[str, Task] = {
    "in_context_recall": Task("in_context_recall", in_context_recall, 16, 128,
                              "recall the value of a key seen earlier"),
    "fuzzy_recall": Task("fuzzy_recall", fuzzy_in_context_recall, 16, 128, "recall with multi-token keys and values"),
    "noisy_recall": Task("noisy_recall", noisy_in_context_recall, 16, 128, "recall with noise tokens interleaved"),
    "selective_copying": Task("selective_copying", selective_copying, 16, 96, "copy the non-blank tokens in order"),
    "compression": Task("compression", compression, 16, 32, "reproduce a sequence after a compression token"),
    "memorization": Task("memorization", memorization, 256, 32, "learn a fixed key-value table"),
}
