"""Head-parallel (tensor-parallel) inference: mLSTM heads are independent, so each rank owns some.

Per mLSTM layer a rank keeps the q/k/v/o rows and gate rows of its heads, the matching slice of
the per-head norm and the matching columns of ``out_proj``; the layer's output is the sum of the
ranks' partial outputs. SwiGLU / gated MLPs split their hidden width the same way. Everything
else is replicated. The recurrent state is sharded like the heads.
"""
from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx

from . import split


@dataclass(frozen=True)
class ShardInfo:
    rank: int
    size: int
    start: int  # first head (mLSTM) or hidden unit (FFN) this rank owns
    end: int
    unit: str  # "heads" or "hidden"

    def __str__(self) -> str:
        return f"rank {self.rank}/{self.size}: {self.unit} {self.start}-{self.end - 1}"


def _rows(w: mx.array, blocks: list[tuple[int, int]]) -> mx.array:
    return mx.concatenate([w[a:b] for a, b in blocks], axis=0)


def _shard_mlstm(block, rank: int, size: int, group) -> ShardInfo:
    p = block.params
    nh = p.num_heads
    h0, h1 = split(nh, size, rank)
    if h1 <= h0:
        raise ValueError(f"{size} ranks but only {nh} heads in an mLSTM layer: every rank needs at least one head")
    dk, dv = block.head_dims
    qk_rows, v_rows = (h0 * dk, h1 * dk), (h0 * dv, h1 * dv)
    if p.weight_mode == "single":
        for name, rows in (("q", qk_rows), ("k", qk_rows), ("v", v_rows), ("ogate_preact", v_rows),
                           ("igate_preact", (h0, h1)), ("fgate_preact", (h0, h1))):
            layer = getattr(block, name)
            layer.weight = layer.weight[rows[0]:rows[1]]
            if "bias" in layer:
                layer.bias = layer.bias[rows[0]:rows[1]]
    else:
        qk, vd = block.qk_dim, block.v_dim
        segs = [(qk_rows[0], qk_rows[1]), (qk + qk_rows[0], qk + qk_rows[1]),
                (2 * qk + v_rows[0], 2 * qk + v_rows[1]), (2 * qk + vd + v_rows[0], 2 * qk + vd + v_rows[1])]
        block.qkv_opreact.weight = _rows(block.qkv_opreact.weight, segs)
        if "bias" in block.qkv_opreact:
            block.qkv_opreact.bias = _rows(block.qkv_opreact.bias, segs)
        gate_segs = [(h0, h1), (nh + h0, nh + h1)]
        block.ifgate_preact.weight = _rows(block.ifgate_preact.weight, gate_segs)
        block.ifgate_preact.bias = _rows(block.ifgate_preact.bias, gate_segs)
    block.multihead_norm.weight = block.multihead_norm.weight[v_rows[0]:v_rows[1]]
    if "bias" in block.multihead_norm:
        block.multihead_norm.bias = block.multihead_norm.bias[v_rows[0]:v_rows[1]]
    block.out_proj.weight = block.out_proj.weight[:, v_rows[0]:v_rows[1]]
    if "bias" in block.out_proj and rank != 0:
        block.out_proj.bias = mx.zeros_like(block.out_proj.bias)  # added once, by rank 0
    block.qk_dim, block.v_dim = (h1 - h0) * dk, (h1 - h0) * dv
    object.__setattr__(block, "_local_heads", h1 - h0)
    object.__setattr__(block, "_tp_group", group)
    return ShardInfo(rank, size, h0, h1, "heads")


def _shard_ffn(block, rank: int, size: int, group) -> ShardInfo:
    hidden = block.hidden
    a, b = split(hidden, size, rank)
    if block.params.weight_mode == "single":
        for name in ("proj_up_gate", "proj_up"):
            layer = getattr(block, name)
            layer.weight = layer.weight[a:b]
            if "bias" in layer:
                layer.bias = layer.bias[a:b]
    else:
        segs = [(a, b), (hidden + a, hidden + b)]
        block.proj_up_gate_z.weight = _rows(block.proj_up_gate_z.weight, segs)
        if "bias" in block.proj_up_gate_z:
            block.proj_up_gate_z.bias = _rows(block.proj_up_gate_z.bias, segs)
    block.proj_down.weight = block.proj_down.weight[:, a:b]
    if "bias" in block.proj_down and rank != 0:
        block.proj_down.bias = mx.zeros_like(block.proj_down.bias)
    block.hidden = b - a
    object.__setattr__(block, "_tp_group", group)
    return ShardInfo(rank, size, a, b, "hidden")


def shard_heads(runner, group=None) -> dict[str, ShardInfo]:
    """Shard ``runner``'s mLSTM heads and FFN widths over ``group``; returns what this rank owns."""
    from xlstm_metal.blocks.mlstm import MLSTM
    from xlstm_metal.blocks.swiglu import SwiGLU

    from . import world

    group = group or world()
    rank, size = group.rank(), group.size()
    owned: dict[str, ShardInfo] = {}
    if size == 1:
        return owned
    if runner.quantization:
        raise ValueError("shard the full-precision model, then quantize each rank's shard")
    for name in runner.graph.compute_nodes():
        block = runner.graph.block(name)
        if isinstance(block, MLSTM):
            owned[name] = _shard_mlstm(block, rank, size, group)
        elif isinstance(block, SwiGLU):
            owned[name] = _shard_ffn(block, rank, size, group)
    mx.eval(runner.model.parameters())
    runner.sharding = owned
    runner._plans.clear()
    runner._decode_fn = None
    return owned


def gather_state(runner, state, group=None):
    """The full (unsharded) state, e.g. to save it: mLSTM entries are gathered along the head axis."""
    from xlstm_metal.state import State

    group = group or getattr(runner, "_tp_group", None)
    sharding = getattr(runner, "sharding", {}) or {}
    if not sharding:
        return state
    from . import world

    group = group or world()
    entries = {}
    for node, arrays in state.entries.items():
        info = sharding.get(node)
        if info is None or info.unit != "heads":
            entries[node] = arrays
            continue
        full = []
        for a in arrays:  # heads are axis 1; shares may be uneven, so pad to the largest, gather, trim
            nh = max(e - s for s, e in (split(info_total(runner, node), info.size, r) for r in range(info.size)))
            pad = nh - a.shape[1]
            padded = mx.pad(a, [(0, 0), (0, pad)] + [(0, 0)] * (a.ndim - 2)) if pad else a
            g = mx.distributed.all_gather(padded[None], group=group)  # [size, B, nh, ...]
            parts = [g[r][:, : (lambda s_e: s_e[1] - s_e[0])(split(info_total(runner, node), info.size, r))]
                     for r in range(info.size)]
            full.append(mx.concatenate(parts, axis=1))
        entries[node] = tuple(full)
    gathered = State(entries, state.tokens_seen, dict(state.metadata))
    mx.eval(gathered.arrays())  # a collective: every rank must run it now, not lazily on rank 0 alone
    return gathered


def info_total(runner, node: str) -> int:
    return runner.graph.block(node).params.num_heads
