"""Hugging Face style checkpoint directories: config.json → spec, strict weight loading, writing."""
from .config import ConfigError, config_to_spec, xLSTMConfig
from .files import CheckpointError
from .load import load_pretrained, read_config
from .sanitize import sanitize

__all__ = ["CheckpointError", "ConfigError", "config_to_spec", "load_pretrained", "read_config", "sanitize", "xLSTMConfig"]
