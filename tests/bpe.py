"""A small byte-level BPE tokenizer trained on a few texts, as the tests' checkpoints carry one."""
from __future__ import annotations


def byte_level_bpe(texts, *, vocab_size: int = 300, special_tokens=()):
    """A ``tokenizers.Tokenizer`` (byte-level pre-tokenizer and decoder) trained on ``texts``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(special_tokens), initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    return tok
