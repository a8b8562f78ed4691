"""Training: data, the AdamW loop with exact resume, and loss curves."""
from .data import TokenBatches, encode_texts, expand_files, read_texts, train_bpe_tokenizer
from .loop import TrainConfig, Trainer, TrainLog, lr_schedule

__all__ = ["TokenBatches", "TrainConfig", "TrainLog", "Trainer", "encode_texts", "expand_files", "lr_schedule", "read_texts",
           "train_bpe_tokenizer"]
