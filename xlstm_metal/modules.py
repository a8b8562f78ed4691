"""The graph's blocks as one ``mlx.nn.Module`` tree whose parameter paths are the node names.

``backbone.blocks.3.mlstm_layer`` becomes ``model.backbone.blocks[3].mlstm_layer``, so
``tree_flatten(model.parameters())`` yields exactly the checkpoint keys
(``backbone.blocks.3.mlstm_layer.q.weight``) and MLX tools (quantize, optimizers,
``load_weights``) work on it unchanged.
"""
from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_map

from .graph import ModelGraph


class Container(nn.Module):
    """A namespace level in the tree (``backbone``, ``backbone.blocks``...)."""


def _to_module(tree):
    if isinstance(tree, nn.Module):
        return tree
    keys = list(tree)
    if keys and all(k.isdigit() for k in keys) and sorted(int(k) for k in keys) == list(range(len(keys))):
        return [_to_module(tree[str(k)]) for k in range(len(keys))]
    module = Container()
    for k, v in tree.items():
        setattr(module, k, _to_module(v))
    return module


class GraphModule(nn.Module):
    """Root module: owns every block at the path of its node name."""

    def __init__(self, graph: ModelGraph):
        super().__init__()
        nested: dict = {}
        for name in graph.compute_nodes():
            parts = name.split(".")
            level = nested
            for p in parts[:-1]:
                level = level.setdefault(p, {})
            level[parts[-1]] = graph.block(name)
        for k, v in nested.items():
            setattr(self, k, _to_module(v))


def cast_parameters(module: nn.Module, dtype: mx.Dtype) -> None:
    """Cast floating-point parameters to ``dtype`` (lazily, one tensor at a time)."""
    module.update(tree_map(lambda a: a.astype(dtype) if mx.issubdtype(a.dtype, mx.floating) else a, module.parameters()))
