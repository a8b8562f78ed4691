"""Training: data, the AdamW loop with exact resume, and loss curves."""
from .data import TokenBatches, encode_texts, expand_files, read_texts, train_bpe_tokenizer
from .loop import TrainConfig, Trainer, TrainLog, lr_schedule, make_step

__all__ = ["TokenBatches", "TrainConfig", "TrainLog", "Trainer", "encode_texts", "expand_files", "lr_schedule",
           "make_step", "read_texts", "train_bpe_tokenizer"]
