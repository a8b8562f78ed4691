"""The one place where checkpoint names meet our parameter layout, both ways.

Node names are the Hugging Face prefixes and most parameters keep the official names. Mapped: the
official ``xlstm`` package's ``embedding.weight``, tied embeddings, and the merged input projections
(mLSTM ``proj_in``, ``gate_bias``, ``qkvo_bias``; SwiGLU ``proj_up_gate_z``), each the official tensors
of the block's ``weight_mode`` concatenated along rows. Quantized ``.scales``/``.biases`` split like the weight.
"""
from __future__ import annotations

import mlx.core as mx
from mlx.utils import tree_flatten

from xlstm_metal.blocks.mlstm import MLSTM
from xlstm_metal.blocks.swiglu import SwiGLU

from .official_lm import official_layout

RENAMES = {"embedding.weight": "backbone.embeddings.weight"}  # the official package's state_dict names
TIED_SOURCES = ("backbone.embeddings.weight", "token_embedding.weight")  # Hugging Face / official xLSTMLMModel
MLSTM_SINGLE = ("q", "k", "v", "ogate_preact", "igate_preact", "fgate_preact")  # proj_in's rows, in order

Piece = tuple[str, int | None]  # an official key and its rows in our array (None: the whole array)


def layout(block) -> dict[str, list[tuple[str, int]]]:
    """Our parameter prefix -> the official prefixes concatenated along rows into it, with their row counts."""
    p = block.params
    if official := official_layout(block):  # the xlstm package's xLSTMLMModel names
        return official
    if isinstance(block, MLSTM):
        rows = block.proj_in_rows
        if p.weight_mode == "fused":
            qkvo, gates = [("qkv_opreact", sum(rows[:4]))], [("ifgate_preact", sum(rows[4:]))]
        else:
            qkvo, gates = list(zip(MLSTM_SINGLE[:4], rows[:4])), list(zip(MLSTM_SINGLE[4:], rows[4:]))
        out = {"proj_in": qkvo + gates, "gate_bias": [(f"{name}.bias", n) for name, n in gates]}
        if p.use_bias:
            out["qkvo_bias"] = [(f"{name}.bias", n) for name, n in qkvo]
        return out
    if isinstance(block, SwiGLU) and p.weight_mode == "single":
        return {"proj_up_gate_z": [("proj_up_gate", block.hidden), ("proj_up", block.hidden)]}
    return {}


def block_keys(block) -> dict[str, list[Piece]]:
    """Each parameter key of ``block`` -> the official tensors (relative to the block) it is made of, in row order."""
    table = layout(block)
    out: dict[str, list[Piece]] = {}
    for key, _ in tree_flatten(block.parameters()):
        prefix = next((pre for pre in table if key == pre or key.startswith(pre + ".")), None)
        suffix = key[len(prefix or ""):]
        out[key] = [(key, None)] if prefix is None else [(name + suffix, rows) for name, rows in table[prefix]]
    return out


def official_keys(graph) -> dict[str, list[Piece]]:
    """``block_keys`` of every node of ``graph``, as full parameter paths."""
    return {f"{node}.{key}": [(f"{node}.{name}", rows) for name, rows in pieces]
            for node in graph.compute_nodes() for key, pieces in block_keys(graph.block(node)).items()}


def sanitize(names: dict, *, tie_word_embeddings: bool = False) -> dict:
    """A checkpoint's ``{key: value}`` under the Hugging Face names (renamed official package keys, a tied head)."""
    out = {RENAMES.get(key, key): value for key, value in names.items()}
    embedding = next((k for k in TIED_SOURCES if k in out), None)
    if tie_word_embeddings and "lm_head.weight" not in out and embedding:
        out["lm_head.weight"] = out[embedding]
    return out


def to_official(keys: dict[str, list[Piece]], params: dict[str, mx.array]) -> dict[str, mx.array]:
    """The inverse: flat parameters as the official tensors (row slices of the merged arrays); ``keys``
    from ``official_keys`` (a model) or ``block_keys`` (one block)."""
    out = {}
    for key, pieces in keys.items():
        start = 0
        for name, rows in pieces:
            out[name] = params[key] if rows is None else params[key][start:start + rows]
            start += rows or 0
    return out
