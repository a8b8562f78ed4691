"""LoRA: low-rank adapters on a model's projections, the base frozen (and, if it was quantized, kept quantized).

A target is named as the block names it: a projection module (``proj_in``, ``out_proj``, ``proj_down`` ...) or a
piece of a merged projection as the checkpoint names it (``q``, ``k``, ``v`` ... of the mLSTM's ``proj_in``;
``proj_up_gate``/``proj_up`` of a SwiGLU's ``proj_up_gate_z``). The pieces come from the one table that maps the
merged layout to checkpoint names (``checkpoint.sanitize.layout``), so an adapter on a piece adapts exactly those
output rows of the merged matrix and no block needs code of its own.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn

from ..checkpoint.sanitize import layout
from ..errors import InputError

PROJECTIONS = (nn.Linear, nn.QuantizedLinear)


class LoRAError(InputError):
    """LoRA options that do not fit the model (unknown target, more layers than it has)."""


@dataclass
class LoRAConfig:
    """What adapts: ``rank`` and ``scale`` (the update is ``scale * x A B``), ``dropout`` on the adapter's input,
    the last ``num_layers`` blocks (-1: all) and the projections named in ``keys`` (None: every projection)."""

    rank: int = 8
    scale: float = 20.0
    dropout: float = 0.0
    num_layers: int = 16
    keys: list[str] | None = None

    def __post_init__(self):
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1:
            raise LoRAError(f"lora rank must be an integer >= 1, got {self.rank!r}")
        if not (isinstance(self.dropout, (int, float)) and 0 <= self.dropout < 1):
            raise LoRAError(f"lora dropout must be in [0, 1), got {self.dropout!r}")
        if not (isinstance(self.scale, (int, float)) and math.isfinite(self.scale)):
            raise LoRAError(f"lora scale must be a finite number, got {self.scale!r}")
        if isinstance(self.num_layers, bool) or not isinstance(self.num_layers, int) or \
                (self.num_layers < 1 and self.num_layers != -1):
            raise LoRAError(f"lora layers must be -1 (all) or an integer >= 1, got {self.num_layers!r}")


def _shape(base: nn.Module) -> tuple[int, int]:
    """(output rows, input width) of a plain or quantized linear layer."""
    out, cols = base.weight.shape
    return out, cols * 32 // base.bits if isinstance(base, nn.QuantizedLinear) else cols


class LoRALinear(nn.Module):
    """``base(x) + scale * dropout(x) @ lora_a @ lora_b`` on the output rows in ``segments`` (None: all rows).

    ``lora_b`` starts at zero, so a fresh adapter leaves the model unchanged."""

    def __init__(self, base: nn.Module, rank: int, scale: float, dropout: float = 0.0,
                 segments: list[tuple[int, int]] | None = None):
        super().__init__()
        base.freeze()
        self.linear = base
        out, d_in = _shape(base)
        rows = out if segments is None else sum(stop - start for start, stop in segments)
        bound = 1 / math.sqrt(d_in)
        self.lora_a = mx.random.uniform(-bound, bound, (d_in, rank))
        self.lora_b = mx.zeros((rank, rows))
        self.dropout = nn.Dropout(dropout)
        object.__setattr__(self, "segments", None if segments is None else list(segments))
        object.__setattr__(self, "scale", float(scale))
        object.__setattr__(self, "out_rows", out)

    def full_b(self) -> mx.array:
        """``lora_b`` spread over all output rows (zeros where the adapter does not reach)."""
        if self.segments is None:
            return self.lora_b
        rank = self.lora_b.shape[0]
        parts, at, used = [], 0, 0
        for start, stop in self.segments:
            if start > at:
                parts.append(mx.zeros((rank, start - at), self.lora_b.dtype))
            parts.append(self.lora_b[:, used:used + stop - start])
            used, at = used + stop - start, stop
        if at < self.out_rows:
            parts.append(mx.zeros((rank, self.out_rows - at), self.lora_b.dtype))
        return mx.concatenate(parts, axis=1)

    def __call__(self, x: mx.array) -> mx.array:
        y = self.linear(x)
        z = (self.dropout(x) @ self.lora_a.astype(x.dtype)) @ self.full_b().astype(x.dtype)
        return y + (self.scale * z).astype(y.dtype)

    def fused(self, dequantize: bool = False) -> nn.Module:
        """The base layer with the update added to its weight: re-quantized as it was (unless ``dequantize``)."""
        base = self.linear
        delta = (self.scale * (self.lora_a @ self.full_b())).T
        if isinstance(base, nn.QuantizedLinear):
            weight = mx.dequantize(base.weight, base.scales, base.get("biases"), group_size=base.group_size,
                                   bits=base.bits, mode=base.mode)
        else:
            weight = base.weight
        out, d_in = _shape(base)
        fused = nn.Linear(d_in, out, bias="bias" in base)
        fused.weight = (weight.astype(mx.float32) + delta).astype(weight.dtype)
        if "bias" in base:
            fused.bias = base.bias
        if isinstance(base, nn.QuantizedLinear) and not dequantize:
            return nn.QuantizedLinear.from_linear(fused, base.group_size, base.bits, mode=base.mode)
        return fused


def projections(block: nn.Module) -> dict[str, list[tuple[str, int, int]]]:
    """Each projection module of ``block`` (path inside it) -> its named row pieces (name, start, stop); a
    projection that is not merged has none."""
    merged = layout(block)
    out = {}
    for path, module in block.named_modules():
        if not path or not isinstance(module, PROJECTIONS):
            continue
        pieces, at = [], 0
        for name, rows in merged.get(path, ()):
            if rows is not None:
                pieces.append((name, at, at + rows))
                at += rows
        out[path] = pieces if len(pieces) > 1 else []
    return out


def lora_layers(graph) -> list[list[str]]:
    """The model's blocks in order, each as the nodes that own projections: nodes group by their name up to the
    last number (``backbone.blocks.3.mlstm_layer`` and ``backbone.blocks.3.ffn`` are block 3); a node without a
    number is a block of its own."""
    groups: dict[str, list[str]] = {}
    for node in graph.compute_nodes():
        if not projections(graph.block(node)):
            continue
        groups.setdefault(_numbered_prefix(node) or node, []).append(node)
    return list(groups.values())


def _numbered_prefix(node: str) -> str | None:
    parts = node.split(".")
    last = max((i for i, p in enumerate(parts) if p.isdigit()), default=None)
    return None if last is None else ".".join(parts[:last + 1])


def target_names(graph) -> list[str]:
    """Every name ``keys`` may hold for ``graph``: projection modules and pieces of merged ones."""
    names: set[str] = set()
    for nodes in lora_layers(graph):
        for node in nodes:
            for path, pieces in projections(graph.block(node)).items():
                names.add(path)
                names.update(name for name, _, _ in pieces)
    return sorted(names)


def plan_lora(graph, cfg: LoRAConfig) -> list[tuple[str, str, list[tuple[int, int]] | None]]:
    """Where ``cfg`` puts adapters on ``graph``: (node, projection path, adapted rows or None for all), or one
    ``LoRAError`` (an unknown target, more blocks than the model has) before anything changes."""
    layers = lora_layers(graph)
    if not layers:
        raise LoRAError(f"the model '{graph.name}' has no linear projections to adapt")
    valid = target_names(graph)
    unknown = sorted(set(cfg.keys or ()) - set(valid))
    if unknown:
        raise LoRAError(f"--lora-targets: unknown projection(s) {', '.join(unknown)}; valid: {', '.join(valid)}")
    if cfg.num_layers > len(layers):
        raise LoRAError(f"--lora-layers {cfg.num_layers}: the model has {len(layers)} blocks (-1: all of them)")
    chosen = layers if cfg.num_layers == -1 else layers[-cfg.num_layers:]
    keys = set(cfg.keys) if cfg.keys else None
    where = []
    for node in (n for nodes in chosen for n in nodes):
        for path, pieces in projections(graph.block(node)).items():
            if keys is None or path in keys:
                where.append((node, path, None))
            elif segments := [(start, stop) for name, start, stop in pieces if name in keys]:
                where.append((node, path, segments))
    if not where:
        raise LoRAError(f"--lora-targets {','.join(cfg.keys or ())}: none of them is in the last {cfg.num_layers} "
                        f"block(s); valid: {', '.join(valid)}")
    return where


def apply_lora(model: nn.Module, graph, cfg: LoRAConfig) -> list[str]:
    """Freeze ``model`` and put adapters on the chosen projections of its last ``cfg.num_layers`` blocks; returns
    the adapted layers' paths. ``model`` holds ``graph``'s blocks (a runner's ``model``)."""
    where = plan_lora(graph, cfg)
    model.freeze()
    for node, path, segments in where:
        block = graph.block(node)
        _replace(block, path, LoRALinear(_get(block, path), cfg.rank, cfg.scale, cfg.dropout, segments))
    return [f"{node}.{path}" for node, path, _ in where]


def fuse_lora(model: nn.Module, dequantize: bool = False) -> int:
    """Replace every adapter by its base layer with the update merged in; returns how many were fused."""
    found = [(path, m) for path, m in model.named_modules() if isinstance(m, LoRALinear)]
    for path, module in found:
        _replace(model, path, module.fused(dequantize))
    return len(found)


def _get(root: nn.Module, path: str) -> nn.Module:
    for part in path.split("."):
        root = root[int(part)] if isinstance(root, list) else root[part]
    return root


def _replace(root: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, last = path.rpartition(".")
    holder = _get(root, parent) if parent else root
    if isinstance(holder, list):
        holder[int(last)] = module
    else:
        setattr(holder, last, module)
