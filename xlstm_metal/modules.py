"""The graph's blocks as one ``mlx.nn.Module`` tree whose parameter paths are the node names
(``backbone.blocks.3.mlstm_layer`` → ``model.backbone.blocks[3].mlstm_layer``), so the parameter paths are the
checkpoint keys and MLX tools (quantize, optimizers) work on it unchanged; plus the dtype names and the
quantization rule that the runner, the checkpoint layer and training share."""
from __future__ import annotations

from typing import Any

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_map

from xlstm_metal.kernels.quantized import quantized_matmul_t

from .graph import ModelGraph

_DTYPES = {"float32": mx.float32, "f32": mx.float32, "bfloat16": mx.bfloat16, "bf16": mx.bfloat16,
           "float16": mx.float16, "f16": mx.float16}


def as_dtype(dtype: Any) -> mx.Dtype:
    if isinstance(dtype, mx.Dtype):
        return dtype
    try:
        return _DTYPES[str(dtype)]
    except KeyError:
        raise ValueError(f"unsupported dtype {dtype!r}; choose one of {', '.join(_DTYPES)}") from None


def dtype_name(dtype: mx.Dtype) -> str:
    return {mx.float32: "float32", mx.bfloat16: "bfloat16", mx.float16: "float16"}[dtype]


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
    module.update(tree_map(lambda a: a.astype(dtype) if mx.issubdtype(a.dtype, mx.floating) else a,
                           module.parameters()))


class QuantizedLinear(nn.QuantizedLinear):
    """``nn.QuantizedLinear`` whose product follows ``kernels.quantized`` (dequantized inside a long prefill)."""

    def __call__(self, x):
        y = quantized_matmul_t(x, self["weight"], self["scales"], self.get("biases"), group_size=self.group_size,
                               bits=self.bits, mode=self.mode)
        return y + self["bias"] if "bias" in self else y


def quantize_model(model: nn.Module, q: dict) -> None:
    """MLX's quantization (``q``: group_size, bits, mode) of every layer whose rows split into whole groups.

    The packed weights are evaluated here, one tensor at a time: a lazy ``mx.quantize`` keeps its float input
    alive until something evaluates it, so without this the float weights would stay allocated next to the
    packed ones (and the peak is the float weights plus one layer's packed ones)."""
    gs = q["group_size"]

    def predicate(path: str, module: nn.Module) -> bool:
        w = getattr(module, "weight", None) if hasattr(module, "to_quantized") else None
        return w is not None and w.ndim == 2 and w.shape[-1] % gs == 0 and w.shape[0] >= 8

    nn.quantize(model, group_size=gs, bits=q["bits"], mode=q.get("mode", "affine"), class_predicate=predicate)
    for _, module in model.named_modules():
        if type(module) is nn.QuantizedLinear:  # same layout and parameters; only the product differs
            module.__class__ = QuantizedLinear
    for _, value in tree_flatten(model.parameters()):
        mx.eval(value)


def dequantize_model(model: nn.Module) -> None:
    """Undo ``quantize_model``: every quantized layer back to full-precision weights (dequantized values)."""
    from mlx.utils import tree_unflatten

    plain = []
    for path, module in model.named_modules():
        if isinstance(module, nn.QuantizedLinear):
            out, cols = module.weight.shape
            layer = nn.Linear(cols * 32 // module.bits, out, bias="bias" in module)
            layer.weight = mx.dequantize(module.weight, module.scales, module.get("biases"),
                                         group_size=module.group_size, bits=module.bits, mode=module.mode)
            if "bias" in module:
                layer.bias = module.bias
            plain.append((path, layer))
        elif getattr(module, "_quant", None):  # a block's own quantized weight (embedding, lm_head)
            module.dequantize_weight()
    if plain:
        model.update_modules(tree_unflatten(plain))
