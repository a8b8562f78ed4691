"""Block types usable in wiring specs. Importing this package registers the core blocks."""
from .base import Block, BlockParams, NodeContext, ShapeError, TensorType, block_types, get_block, register_block

__all__ = ["Block", "BlockParams", "NodeContext", "ShapeError", "TensorType", "block_types", "get_block", "register_block"]
