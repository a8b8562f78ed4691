"""Training data: text files → a token stream → deterministic batches.

Batch ``t`` is a pure function of (seed, t), so a run resumed at step t sees the batches an uninterrupted one would.
"""
from __future__ import annotations

import glob
from pathlib import Path

import numpy as np

from ..errors import InputError

TEXT_SUFFIXES = (".py", ".txt", ".md", ".rst", ".json", ".jsonl")  # what a directory given as data contributes
EOS = "<|endoftext|>"  # the end-of-text token of a tokenizer trained here
IGNORE = -100  # a target that carries no loss (a user turn of a conversation; torch's and mad-lab's value)


def expand_files(patterns: list[str]) -> list[Path]:
    files: list[Path] = []
    for pat in patterns:
        p = Path(pat)
        if p.is_dir():
            files += sorted(q for q in p.rglob("*") if q.is_file() and q.suffix in TEXT_SUFFIXES)
        else:
            files += sorted(Path(f) for f in glob.glob(pat, recursive=True) if Path(f).is_file())
    if not files:
        raise FileNotFoundError(f"no training files match {patterns}")
    return files


def read_texts(files: list[Path], max_bytes: int | None = None,
               skipped: list[tuple[Path, str]] | None = None) -> list[str]:
    """The UTF-8 text of ``files`` (up to ``max_bytes`` characters); a file that is not UTF-8 text or cannot be
    read is left out and, with ``skipped``, recorded there as (path, why)."""
    texts, total = [], 0
    for f in files:
        try:
            t = f.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            if skipped is not None:
                skipped.append((f, f"not UTF-8 text (byte {exc.start})"))
            continue
        except OSError as exc:
            if skipped is not None:
                skipped.append((f, exc.strerror or type(exc).__name__))
            continue
        texts.append(t)
        total += len(t)
        if max_bytes and total >= max_bytes:
            break
    return texts


def train_bpe_tokenizer(texts: list[str], vocab_size: int):
    """A byte-level BPE tokenizer (GPT-2 style) trained on ``texts``; id 0 is the end-of-text token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    return tok


def encode_texts(tokenizer, texts: list[str], eos_id: int) -> np.ndarray:
    """Every text's ids followed by ``eos_id``, concatenated."""
    return np.asarray([i for enc in tokenizer.encode_batch(texts) for i in (*enc.ids, eos_id)], dtype=np.int32)


class TokenBatches:
    """Random windows of ``seq_len + 1`` tokens from a token array; ``batch(t)`` is deterministic. With ``mask``
    (one bool per token), a target whose token is False is ``IGNORE`` (it carries no loss)."""

    def __init__(self, tokens: np.ndarray, batch_size: int, seq_len: int, seed: int = 0,
                 mask: np.ndarray | None = None):
        if len(tokens) < seq_len + 2:
            raise InputError(f"only {len(tokens)} tokens of data: need more than seq_len + 1 = {seq_len + 1} "
                             f"(more --data or a smaller --seq-len)")
        if mask is not None and len(mask) != len(tokens):
            raise ValueError(f"mask has {len(mask)} entries for {len(tokens)} tokens")
        self.tokens, self.batch_size, self.seq_len, self.seed = tokens, batch_size, seq_len, seed
        self.mask = mask

    def batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, step])
        starts = rng.integers(0, len(self.tokens) - self.seq_len - 1, size=self.batch_size)
        window = np.stack([self.tokens[s:s + self.seq_len + 1] for s in starts])
        x, y = window[:, :-1], window[:, 1:]
        if self.mask is not None:
            counted = np.stack([self.mask[s + 1:s + self.seq_len + 1] for s in starts])
            y = np.where(counted, y.astype(np.int32), IGNORE)  # (unsigned token arrays cannot hold it)
        return x, y
