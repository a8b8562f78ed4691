"""The six MAD task generators (Poli et al. 2024, "Mechanistic Design and Scaling of Hybrid Architectures").

Each generator makes one instance ``(inputs, targets)`` from a ``numpy.random.Generator`` with the semantics of
the reference implementation (athms/mad-lab, ``mad/data/instances.py``): the same token layout, vocabulary
ranges, special tokens and scored positions (every other target is ``IGNORE`` = -100), drawing from the
generator in the same order, so one seed gives the reference's instances. The one difference: selective
copying places its blank tokens with the seeded generator (the reference uses numpy's global one).

Training instances of the recall tasks score every next token (language modelling over the whole sequence);
test instances score only the recalled values.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..train.data import IGNORE  # -100, as in mad-lab


def _pick(rng: np.random.Generator, n: int) -> int:
    """An index in ``range(n)``, drawn as the reference's ``rng.choice(sequence)`` draws it."""
    return int(rng.choice(n))


class _ShuffledMotifs:
    """The reference's shuffled ``list(itertools.permutations(vocab, size))``, without building the list.

    Shuffling the index order consumes the generator exactly as shuffling the list does; a permutation is
    decoded from its lexicographic index on demand.
    """

    def __init__(self, vocab: np.ndarray, size: int, rng: np.random.Generator):
        self.vocab, self.size = [int(v) for v in vocab], size
        self.order = np.arange(math.perm(len(self.vocab), size))
        rng.shuffle(self.order)

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, i: int) -> tuple[int, ...]:
        index, remaining, motif = int(self.order[i]), list(self.vocab), []
        for p in range(self.size):
            block = math.perm(len(remaining) - 1, self.size - p - 1)
            j, index = divmod(index, block)
            motif.append(remaining.pop(j))
        return tuple(motif)

    def draw(self, rng: np.random.Generator) -> tuple[int, ...]:
        return self[_pick(rng, len(self))]


def _shift(inputs: list, targets: list, is_training: bool) -> tuple[np.ndarray, np.ndarray]:
    """Next-token pairs: training targets are the next inputs, test targets only the scored positions."""
    x, y = np.array(inputs, dtype=np.int64), np.array(targets, dtype=np.int64)
    return (x[:-1], x[1:]) if is_training else (x[:-1], y[1:])


def in_context_recall(rng, vocab_size=16, seq_len=128, is_training=True, multi_query=True, noise_vocab_size=0,
                      frac_noise=0.0, **_):
    """Key-value pairs with a per-sequence mapping; a value is scored after its key recurs.

    Keys ``[0, n/2)``, values ``[n/2, n)``, noise ``[n, n + noise_vocab_size)`` where ``n`` is the vocabulary
    minus the noise tokens (and minus the copy-prefix token ``vocab_size - 1`` when not ``multi_query``); the
    sequence ends with a probe of a key already presented. Length ``seq_len - 1``.
    """
    if seq_len % 2:
        raise ValueError(f"in-context recall needs an even seq_len, got {seq_len}")
    copy_prefix = vocab_size - 1
    n = (vocab_size if multi_query else vocab_size - 1) - noise_vocab_size
    keys, values = np.arange(n // 2), np.arange(n // 2, n)
    noise = np.arange(n, n + noise_vocab_size)
    inputs, targets, kv, presented = [], [], {}, {}
    pairs = seq_len // 2
    not_noise = _pick(rng, pairs)  # at least one key-value pair
    for i in range(pairs - 1):
        if frac_noise > 0 and i != not_noise and rng.random() < frac_noise:
            inputs += [int(t) for t in rng.choice(noise, size=2, replace=True)]
            targets += [IGNORE, IGNORE]
            continue
        k = int(keys[_pick(rng, len(keys))])
        if k not in kv:
            kv[k] = int(values[_pick(rng, len(values))])
        v = kv[k]
        inputs += [k, v]
        targets += [IGNORE, v if (k in presented and multi_query) else IGNORE]
        presented[k] = v
    if not presented:  # every pair drew noise (possible only for tiny seq_len): the reference fails here too
        raise ValueError(f"in-context recall: seq_len {seq_len} too short for frac_noise {frac_noise}")
    probe = list(presented)[_pick(rng, len(presented))]
    if not multi_query:
        inputs.append(copy_prefix)
        targets.append(IGNORE)
    inputs += [probe, presented[probe]]
    targets += [IGNORE, presented[probe]]
    return _shift(inputs, targets, is_training)


def noisy_in_context_recall(rng, vocab_size=32, seq_len=128, noise_vocab_size=16, frac_noise=0.2, **kw):
    """In-context recall with pairs of noise tokens (``noise_vocab_size`` ids above the keys and values)
    replacing a key-value pair with probability ``frac_noise``."""
    return in_context_recall(rng, vocab_size, seq_len, noise_vocab_size=noise_vocab_size, frac_noise=frac_noise,
                             **{k: v for k, v in kw.items() if k in ("is_training", "multi_query")})


def fuzzy_in_context_recall(rng, vocab_size=16, seq_len=128, k_motif_size=3, v_motif_size=3, is_training=True,
                            multi_query=True, noise_vocab_size=0, frac_noise=0.0, **_):
    """Recall where keys and values are motifs of 1..k (1..v) distinct tokens; test keys have the full size k.

    The pad token (``vocab_size - 1`` with ``multi_query``) left-pads every sequence to ``seq_len``.
    """
    copy_prefix = vocab_size - 1
    pad = vocab_size - 1 if multi_query else vocab_size - 2
    n = (vocab_size - 1 if multi_query else vocab_size - 2) - noise_vocab_size
    key_vocab, value_vocab = np.arange(n // 2), np.arange(n // 2, n)
    key_sizes = range(1, k_motif_size + 1) if is_training else [k_motif_size]
    keys = {s: _ShuffledMotifs(key_vocab, s, rng) for s in key_sizes}
    values = {s: _ShuffledMotifs(value_vocab, s, rng) for s in range(1, v_motif_size + 1)}
    noise = np.arange(n, n + noise_vocab_size)
    k_sizes, v_sizes = list(keys), list(values)

    k_probe_size = k_sizes[_pick(rng, len(k_sizes))] if is_training else k_motif_size
    v_probe_size = v_sizes[_pick(rng, len(v_sizes))]
    k_probe, v_probe = keys[k_probe_size].draw(rng), values[v_probe_size].draw(rng)
    probe_len = k_probe_size + v_probe_size
    probe_at = _pick(rng, seq_len - 2 * probe_len)
    probe_added = False
    kv = {s: {} for s in range(1, k_motif_size + 1)}
    inputs, targets, presented = [], [], {}
    while len(inputs) < seq_len - probe_len - (k_motif_size + v_motif_size):
        k_size = k_sizes[_pick(rng, len(k_sizes))] if is_training else k_motif_size
        v_size = v_sizes[_pick(rng, len(v_sizes))]
        if len(inputs) >= probe_at and not probe_added:
            inputs += [*k_probe, *v_probe]
            targets += [IGNORE] * probe_len
            kv[k_probe_size][k_probe] = presented[k_probe] = v_probe
            probe_added = True
            continue
        if frac_noise > 0 and rng.random() < frac_noise:
            inputs += [int(t) for t in rng.choice(noise, size=k_size + v_size, replace=True)]
            targets += [IGNORE] * (k_size + v_size)
            continue
        k = keys[k_size].draw(rng)
        if k == k_probe:
            v, probe_added = v_probe, True
        elif k not in kv[k_size]:
            v = kv[k_size][k] = values[v_size].draw(rng)
        else:
            v = kv[k_size][k]
        inputs += [*k, *v]
        targets += [IGNORE] * k_size + (list(v) if (k in presented and multi_query) else [IGNORE] * len(v))
        presented[k] = v
    if not multi_query:
        inputs.append(copy_prefix)
        targets.append(IGNORE)
    inputs += [*k_probe, *v_probe]
    targets += [IGNORE] * k_probe_size + list(v_probe)
    n_pad = seq_len + 1 - len(inputs)
    return _shift([pad] * n_pad + inputs, [IGNORE] * n_pad + targets, is_training)


def memorization_table(vocab_size: int, seed: int = 12345) -> tuple[np.ndarray, np.ndarray]:
    """The fixed facts over a vocabulary of ``vocab_size`` (the insert token excluded): ``(keys, value_of)``,
    keys ``[0, V/2)`` and values ``[V/2, V)`` each shuffled by ``default_rng(seed)`` and paired in that order;
    ``keys`` is the order instances draw from, ``value_of[key]`` the fact."""
    fact_rng = np.random.default_rng(seed)
    keys, values = np.arange(vocab_size // 2), np.arange(vocab_size // 2, vocab_size)
    fact_rng.shuffle(keys)
    fact_rng.shuffle(values)
    value_of = np.empty(len(keys), dtype=np.int64)
    value_of[keys] = values[:len(keys)]
    return keys, value_of


def memorization(rng, vocab_size=256, seq_len=32, table=None, seed=12345, **_):
    """Pairs ``key, insert`` where the insert token (``vocab_size - 1``) is scored with the key's fixed value;
    the table (``memorization_table``) is the same for every instance, so it must be learnt into the weights.
    Training and test instances have the same layout. Length ``seq_len`` (even)."""
    insert = vocab_size - 1
    key_order, value_of = memorization_table(vocab_size - 1, seed) if table is None else table
    pairs = seq_len // 2
    _pick(rng, pairs)  # the reference draws a "not noise" index even without noise
    keys = np.array([key_order[_pick(rng, len(key_order))] for _ in range(pairs)], dtype=np.int64)
    inputs = np.stack([keys, np.full(pairs, insert)], axis=1).reshape(-1)
    targets = np.stack([np.full(pairs, IGNORE), value_of[keys]], axis=1).reshape(-1)
    return inputs, targets


def compression(rng, vocab_size=16, seq_len=32, **_):
    """``seq_len - 1`` random tokens, then the compression token (``vocab_size - 1``); the model (an
    auto-encoder) reconstructs every position, the compression token included, from the last position."""
    tokens = rng.choice(vocab_size - 1, size=seq_len - 1, replace=True)
    x = np.concatenate([tokens, [vocab_size - 1]]).astype(np.int64)
    return x, x.copy()


def selective_copying(rng, vocab_size=16, seq_len=256, num_tokens_to_copy=16, **_):
    """``num_tokens_to_copy`` tokens among blanks (``vocab_size - 2``), the copy token (``vocab_size - 1``),
    then blanks at which the tokens are scored in their order. No blank follows the last token to copy."""
    n = num_tokens_to_copy
    if seq_len <= 2 * n + 1:
        raise ValueError(f"selective copying needs seq_len > 2 * num_tokens_to_copy + 1, got {seq_len} and {n}")
    blank, copy = vocab_size - 2, vocab_size - 1
    n_blank = seq_len - 2 * n - 1
    to_copy = rng.choice(vocab_size - 2, size=n, replace=True).astype(np.int64)
    where = rng.integers(0, n, size=n_blank)
    inputs = np.concatenate([np.insert(to_copy, where, blank), [copy], np.full(n, blank)]).astype(np.int64)
    targets = np.concatenate([np.full(n + n_blank + 1, IGNORE), to_copy]).astype(np.int64)
    return inputs, targets


@dataclass(frozen=True)
class Task:
    name: str  # our name (snake_case, the CLI's)
    reference_name: str  # mad-lab's task name
    shorthand: str  # mad-lab's directory shorthand
    make: Callable[..., tuple[np.ndarray, np.ndarray]]
    autoencoder: bool  # trained with the auto-encoder backbone
    doc: str


TASKS: dict[str, Task] = {t.name: t for t in [
    Task("in_context_recall", "in-context-recall", "CR", in_context_recall, False,
         "recall the value of a key seen earlier"),
    Task("fuzzy_recall", "fuzzy-in-context-recall", "FR", fuzzy_in_context_recall, False,
         "recall with keys and values of several tokens"),
    Task("noisy_recall", "noisy-in-context-recall", "NR", noisy_in_context_recall, False,
         "recall with noise tokens interleaved"),
    Task("selective_copying", "selective-copying", "SC", selective_copying, False,
         "copy the non-blank tokens in order"),
    Task("compression", "compression", "C", compression, True,
         "reconstruct a sequence from its last position"),
    Task("memorization", "memorization", "M", memorization, False, "learn a fixed key-value table"),
]}


def generate(task: str, n: int, rng: np.random.Generator, is_training: bool, **params) -> tuple[np.ndarray, np.ndarray]:
    """``n`` instances of ``task`` stacked into ``inputs, targets`` ``[n, L]`` int64 arrays."""
    make = TASKS[task].make
    if task == "memorization":
        params.setdefault("table", memorization_table(params["vocab_size"] - 1, params.get("seed", 12345)))
    pairs = [make(rng, is_training=is_training, **params) for _ in range(n)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
