"""A spec as a MAD model: its vocabulary and width set for the setting, run as a language model, or for
compression as the encoder of mad-lab's auto-encoder (``mad/model/auto_encoder.py``: the last position's hidden
state plus sinusoidal position embeddings, decoded by a fixed two-layer GELU MLP into every position's token).
"""
from __future__ import annotations

import copy
import math

import mlx.core as mx
import mlx.nn as nn

from ..errors import InputError
from ..graph import build_graph
from ..modules import GraphModule
from ..plan import make_plan
from ..runtime import execute
from ..spec import load_spec, read_source, shipped_spec_path
from ..spec.source import SpecSource


def spec_source(spec) -> SpecSource:
    """A spec path, shipped spec name, YAML text or dict as a ``SpecSource`` (file and lines kept for errors)."""
    if isinstance(spec, str) and "\n" not in spec and not spec.endswith((".yaml", ".yml")):
        path = shipped_spec_path(spec)
        if path is None:
            load_spec(spec)  # raises the SpecError that lists the shipped specs
        spec = path or spec
    return read_source(spec)


def adapt_spec(spec, vocab_size: int, width: int | None, autoencoder: bool) -> SpecSource:
    """The spec with every embedding and lm_head sized to ``vocab_size``, the embedding width (the model width)
    set to ``width`` (None: kept) and, for the auto-encoder, the lm_head removed: the output is its input."""
    source = spec_source(spec)
    build_graph(source, materialize=False)  # the user's spec errors name its file and line
    data = copy.deepcopy(source.data)
    heads = [n for n in data["nodes"] if n.get("type") == "lm_head"]

    def visit(nodes):
        for n in nodes:
            if "repeat" in n:
                visit(n.get("nodes", []))
            elif n.get("type") == "embedding":
                n["num_embeddings"] = vocab_size
                if width is not None:
                    if isinstance(n.get("dim"), str) and n["dim"] in data.get("dims", {}):
                        data["dims"][n["dim"]] = width
                    else:
                        n["dim"] = width
            elif n.get("type") == "lm_head":
                n["vocab_size"] = vocab_size
    visit(data["nodes"])
    if autoencoder:
        if len(heads) != 1 or data.get("outputs") != [heads[0]["name"]] or len(heads[0].get("inputs", [])) != 1:
            where = source.file or "the spec"
            raise InputError(f"{where}: outputs: the compression task needs one top-level lm_head as the only output "
                             f"(its input becomes the auto-encoder's encoding)")
        data["nodes"] = [n for n in data["nodes"] if n is not heads[0]]
        data["outputs"] = list(heads[0]["inputs"])
    return SpecSource(data, source.file, source.lines)


def sincos_positions(length: int, dim: int) -> mx.array:
    """mad-lab's ``posemb_sincos_1d``: [length, dim] sines then cosines of geometric frequencies."""
    half = dim // 2
    freq = mx.exp(mx.arange(half, dtype=mx.float32) * -(math.log(10000) / max(half - 1, 1)))
    angle = mx.arange(length, dtype=mx.float32)[:, None] * freq[None]
    emb = mx.concatenate([mx.sin(angle), mx.cos(angle)], axis=1)
    return mx.pad(emb, [(0, 0), (0, dim % 2)])


def _small_linear(dims_in: int, dims_out: int) -> nn.Linear:
    layer = nn.Linear(dims_in, dims_out)
    layer.weight = mx.random.normal(layer.weight.shape) * 0.02  # mad-lab's init: N(0, 0.02), zero bias
    layer.bias = mx.zeros_like(layer.bias)
    return layer


class MadModel(nn.Module):
    """``model(tokens, training) -> logits [B, L, vocab]`` for the spec's graph, as a language model or as the
    encoder of an auto-encoder."""

    def __init__(self, spec, vocab_size: int, width: int | None, autoencoder: bool):
        super().__init__()
        self.graph = build_graph(adapt_spec(spec, vocab_size, width, autoencoder))
        self.backbone = GraphModule(self.graph)
        self.autoencoder = autoencoder
        self._plans: dict = {}
        if autoencoder:
            dim = self.graph.node(self.graph.outputs[0])["out_type"].dim
            self.decoder = [nn.RMSNorm(dim), _small_linear(dim, dim), nn.RMSNorm(dim), _small_linear(dim, dim)]
            self.unembed = [nn.RMSNorm(dim), _small_linear(dim, vocab_size)]

    @property
    def name(self) -> str:
        return self.graph.name

    def _plan(self, seq_len: int, training: bool):
        if (seq_len, training) not in self._plans:
            self._plans[(seq_len, training)] = make_plan(self.graph, seq_len, segment_len=None, training=training)
        return self._plans[(seq_len, training)]

    def __call__(self, tokens: mx.array, training: bool = False) -> mx.array:
        plan = self._plan(int(tokens.shape[1]), training)
        out = execute(self.graph, plan, tokens, training=training)[0][self.graph.outputs[0]].astype(mx.float32)
        if not self.autoencoder:
            return out
        x = out[:, -1:, :] + sincos_positions(tokens.shape[1], out.shape[-1])[None]
        norm1, lin1, norm2, lin2 = self.decoder
        x = nn.gelu(lin2(norm2(nn.gelu(lin1(norm1(x))))))
        norm, head = self.unembed
        return head(norm(x))
