"""The official ``xlstm`` package's language model (``xLSTMLMModel``, the xLSTM paper's architecture):
its config (``xLSTMLMModelConfig`` as a dict, as ``dataclasses.asdict`` writes it) → a wiring spec, and
the few names where its ``state_dict`` keys differ from our parameters.

Node names are the official module paths (``token_embedding``, ``xlstm_block_stack.blocks.{i}.xlstm``,
...), so the state_dict keys are our parameter paths except for the sLSTM cell's ``_recurrent_kernel_`` /
``_bias_`` (MLX keeps no parameters whose names start with ``_``) and the FFN's merged ``proj_up``.
"""
from __future__ import annotations

import math
from typing import Any

from xlstm_metal.blocks.slstm_layer import SLSTMLayer
from xlstm_metal.blocks.swiglu import SwiGLU

from .config import ConfigError

_ACTIVATIONS = {"gelu": "gelu", "relu": "relu", "sigmoid": "sigmoid", "swish": "silu"}
_SLSTM_CELL = {"slstm_cell.recurrent_kernel": "slstm_cell._recurrent_kernel_", "slstm_cell.bias": "slstm_cell._bias_"}


def is_official_lm_config(raw: dict) -> bool:
    """Whether a config dict is an ``xLSTMLMModelConfig`` (block configs nested under mlstm_block/slstm_block)."""
    return isinstance(raw, dict) and ("mlstm_block" in raw or "slstm_block" in raw) and "vocab_size" in raw


def official_layout(block) -> dict[str, list[tuple[str, None]]]:
    """Our parameter prefix -> the official key it is stored under, for the blocks whose names differ."""
    if isinstance(block, SLSTMLayer):
        return {ours: [(theirs, None)] for ours, theirs in _SLSTM_CELL.items()}
    if isinstance(block, SwiGLU) and block.params.weight_mode == "proj_up":
        return {"proj_up_gate_z": [("proj_up", None)]}
    return {}


class _Reader:
    """Typed access to one config section; errors name the file and the field's full path."""

    def __init__(self, data: Any, where: str, source: str):
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: {where or 'the config'} must be a mapping, got {type(data).__name__}")
        self.data, self.where, self.source = data, where, source

    def path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def bad(self, key: str, why: str) -> ConfigError:
        return ConfigError(f"{self.source}: field '{self.path(key)}' {why}")

    def get(self, key: str, default: Any, kind: type | tuple = int, minimum: float | None = None) -> Any:
        value = self.data.get(key, default)
        if value is None and default is None:
            return None
        ok = isinstance(value, kind) and not (isinstance(value, bool) and kind in (int, float, (int, float)))
        if not ok:
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise self.bad(key, f"must be {names}, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.bad(key, f"must be >= {minimum}, got {value!r}")
        return value

    def section(self, key: str) -> "_Reader | None":
        value = self.data.get(key)
        return None if value is None else _Reader(value, self.path(key), self.source)


def _proj_width(sec: _Reader, dim: int, default_factor: float) -> tuple[float, int]:
    """(proj_factor, round_to) of an up-projection; only rounding up is implemented (the official default)."""
    if sec.get("round_proj_up_dim_up", True, bool) is not True:
        raise sec.bad("round_proj_up_dim_up", "false (rounding the width down) is not supported; use true")
    factor = sec.get("proj_factor", default_factor, (int, float), minimum=1e-9)
    multiple = sec.get("round_proj_up_to_multiple_of", 64, int, minimum=1)
    if math.ceil(factor * dim / multiple) * multiple <= 0:
        raise sec.bad("proj_factor", f"gives an empty projection for embedding_dim {dim}")
    return float(factor), multiple


def _block_map(top: _Reader, num_blocks: int, has_mlstm: bool, has_slstm: bool) -> list[str]:
    at = top.data.get("slstm_at", [])
    if not has_mlstm or at == "all":
        at = list(range(num_blocks))
    if not isinstance(at, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in at):
        raise top.bad("slstm_at", f"must be a list of block indices or 'all', got {at!r}")
    bad = [i for i in at if not 0 <= i < num_blocks]
    if bad:
        raise top.bad("slstm_at", f"has position(s) {bad} outside 0..{num_blocks - 1} (num_blocks {num_blocks})")
    if at and not has_slstm:
        raise top.bad("slstm_at", "places sLSTM blocks but slstm_block is null")
    return ["slstm" if i in set(at) else "mlstm" for i in range(num_blocks)]


def official_lm_spec(raw: dict, name: str = "xlstm-lm", source: str = "config.json") -> dict[str, Any]:
    """The wiring spec (a dict) of an official ``xLSTMLMModelConfig`` dict; ``source`` names it in errors."""
    top = _Reader(raw, "", source)
    dim = top.get("embedding_dim", 128, int, minimum=1)
    num_blocks = top.get("num_blocks", 1, int, minimum=1)
    vocab = top.get("vocab_size", None, int, minimum=1)
    if vocab is None:
        raise top.bad("vocab_size", "is required")
    bias = top.get("bias", False, bool)
    mblock, sblock = top.section("mlstm_block"), top.section("slstm_block")
    kinds = _block_map(top, num_blocks, mblock is not None, sblock is not None)
    layers: dict[str, dict] = {}
    ffn = None
    if mblock is not None:
        m = mblock.section("mlstm") or _Reader({}, mblock.path("mlstm"), source)
        factor, multiple = _proj_width(m, dim, 2.0)
        layers["mlstm"] = {"type": "mlstm_layer", "num_heads": m.get("num_heads", 4, int, 1),
                           "proj_factor": factor, "round_up_to": multiple,
                           "conv1d_kernel_size": m.get("conv1d_kernel_size", 4, int, 1),
                           "qkv_proj_blocksize": m.get("qkv_proj_blocksize", 4, int, 1), "use_bias": bias}
    if sblock is not None:
        s = sblock.section("slstm") or _Reader({}, sblock.path("slstm"), source)
        backend = s.get("backend", "cuda", str)
        if backend not in ("vanilla", "cuda"):
            raise s.bad("backend", f"must be 'vanilla' or 'cuda', got {backend!r}")
        if s.get("function", "slstm", str) != "slstm":
            raise s.bad("function", "must be 'slstm' (the plain LSTM cell is not implemented)")
        layers["slstm"] = {"type": "slstm_layer", "num_heads": s.get("num_heads", 4, int, 1),
                           "conv1d_kernel_size": s.get("conv1d_kernel_size", 4, int, 0),
                           "group_norm_weight": s.get("group_norm_weight", True, bool), "backend": backend,
                           "num_blocks": num_blocks}
        f = sblock.section("feedforward") if "feedforward" in sblock.data else \
            _Reader({}, sblock.path("feedforward"), source)  # the official default: a gated FFN
        if f is not None:
            if f.get("ff_type", "ffn_gated", str) != "ffn_gated":
                raise f.bad("ff_type", "must be 'ffn_gated'")
            act = f.get("act_fn", "gelu", str)
            if act not in _ACTIVATIONS:
                raise f.bad("act_fn", f"{act!r} is not supported; use one of {sorted(_ACTIVATIONS)}")
            factor, multiple = _proj_width(f, dim, 1.3)
            ffn = {"type": "gated_mlp", "proj_factor": factor, "round_up_to": multiple, "activation": _ACTIVATIONS[act],
                   "use_bias": f.get("bias", False, bool), "weight_mode": "proj_up"}
    nodes: list[dict[str, Any]] = [{"name": "token_embedding", "type": "embedding", "inputs": ["tokens"],
                                    "num_embeddings": vocab, "dim": dim}]
    prev = "token_embedding"
    for i, kind in enumerate(kinds):
        at = f"xlstm_block_stack.blocks.{i}"
        layer = dict(layers[kind], block_idx=i) if kind == "slstm" else layers[kind]
        nodes += [{"name": f"{at}.xlstm_norm", "type": "layer_norm", "inputs": [prev]},
                  {"name": f"{at}.xlstm", "inputs": [f"{at}.xlstm_norm"], **layer},
                  {"name": f"{at}.res", "type": "add", "inputs": [prev, f"{at}.xlstm"]}]
        prev = f"{at}.res"
        if kind == "slstm" and ffn is not None:
            nodes += [{"name": f"{at}.ffn_norm", "type": "layer_norm", "inputs": [prev]},
                      {"name": f"{at}.ffn", "inputs": [f"{at}.ffn_norm"], **ffn},
                      {"name": f"{at}.out", "type": "add", "inputs": [prev, f"{at}.ffn"]}]
            prev = f"{at}.out"
    if top.get("add_post_blocks_norm", True, bool):
        nodes.append({"name": "xlstm_block_stack.post_blocks_norm", "type": "layer_norm", "inputs": [prev]})
        prev = "xlstm_block_stack.post_blocks_norm"
    nodes.append({"name": "lm_head", "type": "lm_head", "inputs": [prev], "vocab_size": vocab, "soft_cap": None})
    counts = {k: kinds.count(k) for k in ("mlstm", "slstm")}
    return {"name": name, "description": f"official xLSTMLMModel, xLSTM[{counts['mlstm']}:{counts['slstm']}], "
                                         f"{num_blocks} blocks (from {source})",
            "inputs": ["tokens"], "nodes": nodes, "outputs": ["lm_head"]}
