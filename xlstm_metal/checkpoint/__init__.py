"""Hugging Face style checkpoint directories: config.json → spec, strict weight loading, writing."""
from .config import ConfigError, config_to_spec, xLSTMConfig
from .files import CheckpointError
from .load import Checkpoint, load_tokenizer, open_checkpoint
from .sanitize import block_keys, official_keys, sanitize, to_official

__all__ = ["Checkpoint", "block_keys", "CheckpointError", "ConfigError", "config_to_spec", "load_tokenizer",
           "official_keys", "open_checkpoint", "sanitize", "to_official", "xLSTMConfig"]
