"""Training: data (text, JSONL records), the AdamW loop with exact resume, LoRA adapters, and loss curves
(imported on first use: the command line reads ``TrainConfig`` for its ``--help`` without MLX)."""
from ..lazy import lazy_exports

_EXPORTS = {"TokenBatches": ".data", "encode_texts": ".data", "expand_files": ".data", "read_texts": ".data",
            "train_bpe_tokenizer": ".data", "TrainConfig": ".config", "TrainLog": ".loop", "Trainer": ".loop",
            "lr_schedule": ".loop", "make_step": ".loop", "LoRAConfig": ".lora", "apply_lora": ".lora",
            "fuse_lora": ".lora", "load_adapters": ".adapters", "save_adapters": ".adapters",
            "fuse_adapters": ".adapters", "read_records": ".records", "encode_records": ".records"}
__getattr__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
