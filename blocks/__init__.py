"""Block types usable in wiring specs. Importing this package registers the core blocks.

Adding a block type means adding a file with a ``@register_block`` class and importing it here.
"""
from .base import Block, BlockParams, NodeContext, ShapeError, TensorType, block_types, get_block, register_block
from . import (add, attention, causal_conv1d, embedding, gated_mlp, layer_norm, lm_head, mlstm,  # noqa: F401,E402
               mlstm_layer, multihead_layer_norm, rms_norm, slstm, slstm_layer, swiglu)  # (registration)

__all__ = ["Block", "BlockParams", "NodeContext", "ShapeError", "TensorType", "block_types", "get_block",
           "register_block"]
