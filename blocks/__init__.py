"""Block types usable in wiring specs. Importing this package registers the core blocks.

Adding a block type means adding a file with a ``@register_block`` class and importing it here.
"""
from .base import Block, BlockParams, NodeContext, ShapeError, TensorType, block_types, get_block, register_block
from . import (add, attention, causal_conv1d, embedding, gated_mlp, lm_head, mlstm,  # noqa: F401,E402  (registration)
               multihead_layer_norm, rms_norm, slstm, swiglu)

__all__ = ["Block", "BlockParams", "NodeContext", "ShapeError", "TensorType", "block_types", "get_block",
           "register_block"]
