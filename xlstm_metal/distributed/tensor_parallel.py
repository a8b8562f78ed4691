"""Head-parallel (tensor-parallel) inference: mLSTM heads are independent, so each rank owns some.

Per mLSTM layer a rank keeps its heads' rows of each block of ``proj_in`` and the gate biases, the
matching slice of the per-head norm and columns of ``out_proj``; the layer's output is the sum of the
ranks' partial outputs. SwiGLU / gated MLPs split their hidden width the same way; everything else is
replicated. The recurrent state is sharded like the heads.
"""
from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
from mlx.utils import tree_flatten, tree_unflatten

from ..blocks.mlstm import MLSTM
from ..blocks.swiglu import SwiGLU
from ..state import State
from .group import split, world


@dataclass(frozen=True)
class ShardInfo:
    rank: int
    size: int
    start: int  # first head (mLSTM) or hidden unit (FFN) this rank owns
    end: int
    unit: str  # "heads" or "hidden"

    def __str__(self) -> str:
        return f"rank {self.rank}/{self.size}: {self.unit} {self.start}-{self.end - 1}"


Segments = list[tuple[int, int, int]]  # (axis, start, end) pieces concatenated along that axis; []: zeros here


def take(arr: mx.array, segs: Segments) -> mx.array:
    """The pieces of ``arr`` named by ``segs``, concatenated (works on lazily loaded arrays)."""
    axis = segs[0][0]
    pieces = [arr[a:b] if axis == 0 else arr[:, a:b] for _, a, b in segs]
    return pieces[0] if len(pieces) == 1 else mx.concatenate(pieces, axis=axis)


def within(segs: Segments, start: int, rows: int) -> Segments:
    """The row pieces of ``segs`` that fall in rows [start, start + rows), relative to ``start``
    (what a rank needs of one checkpoint tensor that fills those rows of a merged array)."""
    return [(0, max(a, start) - start, min(b, start + rows) - start) for _, a, b in segs
            if min(b, start + rows) > max(a, start)]


def _rows(widths, units: int, u0: int, u1: int) -> Segments:
    """Units [u0, u1) of each of the stacked row blocks ``widths``, each made of ``units`` equal units."""
    segs, at = [], 0
    for width in widths:
        d = width // units
        segs.append((0, at + u0 * d, at + u1 * d))
        at += width
    return segs


def _shard_mlstm(block, rank: int, size: int) -> tuple[dict[str, Segments], ShardInfo]:
    nh = block.params.num_heads
    h0, h1 = split(nh, size, rank)
    if h1 <= h0:
        raise ValueError(f"{size} ranks but only {nh} heads in an mLSTM layer: every rank needs at least one head")
    rows, dv = block.proj_in_rows, block.v_dim // nh  # rows: q, k, v, ogate, igate, fgate
    segs: dict[str, Segments] = {"proj_in.weight": _rows(rows, nh, h0, h1), "gate_bias": _rows(rows[4:], nh, h0, h1),
                                 "multihead_norm.weight": [(0, h0 * dv, h1 * dv)],
                                 "out_proj.weight": [(1, h0 * dv, h1 * dv)]}
    if "qkvo_bias" in block:
        segs["qkvo_bias"] = _rows(rows[:4], nh, h0, h1)
    _apply(block, segs, rank)
    (dk, dv), n = block.head_dims, h1 - h0
    block.qk_dim, block.v_dim, block.local_heads = n * dk, n * dv, n
    return segs, ShardInfo(rank, size, h0, h1, "heads")


def _shard_ffn(block, rank: int, size: int) -> tuple[dict[str, Segments], ShardInfo]:
    hidden = block.hidden
    a, b = split(hidden, size, rank)
    segs: dict[str, Segments] = {"proj_up_gate_z.weight": _rows((hidden, hidden), hidden, a, b),
                                 "proj_down.weight": [(1, a, b)]}
    _apply(block, segs, rank)
    block.hidden = b - a
    return segs, ShardInfo(rank, size, a, b, "hidden")


def _apply(block, segs: dict[str, Segments], rank: int) -> None:
    """Keep this rank's pieces of the parameters ``segs`` names, and of their layers' biases."""
    params = dict(tree_flatten(block.parameters()))
    for key, sg in list(segs.items()):
        bias = key.removesuffix("weight") + "bias"
        if not key.endswith(".weight") or bias not in params:
            continue
        if sg[0][0] == 0:  # split by rows: the bias follows them
            segs[bias] = sg
        elif rank != 0:  # split by columns, a partial output: rank 0 alone adds the bias (zeros here, not read)
            segs[bias] = []
    new = [(k, take(params[k], sg) if sg else mx.zeros_like(params[k])) for k, sg in segs.items()]
    block.update(tree_unflatten(new), strict=False)


def shard_heads(runner, group=None) -> dict[str, ShardInfo]:
    """Shard ``runner``'s mLSTM heads and FFN widths over ``group``; returns what this rank owns.

    Records ``runner.shard_slices`` (parameter key -> pieces), which ``from_pretrained(shard=True)``
    applies to each checkpoint tensor as it is read, so a rank materialises only its own part of the weights.
    """
    group = group or world()
    rank, size = group.rank(), group.size()
    owned: dict[str, ShardInfo] = {}
    if size == 1:
        return owned
    if runner.quantization:
        raise ValueError("shard the full-precision model, then quantize each rank's shard")
    slices: dict[str, Segments] = {}
    for name in runner.graph.compute_nodes():
        block = runner.graph.block(name)
        shard = _shard_mlstm if isinstance(block, MLSTM) else _shard_ffn if isinstance(block, SwiGLU) else None
        if shard is None:
            continue
        segs, info = shard(block, rank, size)
        object.__setattr__(block, "_tp_group", group)
        owned[name] = info
        slices.update({f"{name}.{k}": v for k, v in segs.items()})
    runner.sharding = owned
    runner.shard_slices = slices
    runner._plans.clear()
    runner._decode_fn = {}
    return owned


def gather_state(runner, state, group=None):
    """The full (unsharded) state, e.g. to save it: mLSTM entries are gathered along the head axis.

    A collective: every rank must call it.
    """
    sharding = getattr(runner, "sharding", {}) or {}
    if not sharding:
        return state
    group = group or world()
    entries = {}
    for node, arrays in state.entries.items():
        info = sharding.get(node)
        if info is None or info.unit != "heads":
            entries[node] = arrays
            continue
        heads = (info.start, runner.graph.block(node).params.num_heads - info.end)
        # heads are axis 1: each rank places its own among zeros, and the ranks' arrays are summed
        entries[node] = tuple(mx.distributed.all_sum(mx.pad(a, [(0, 0), heads] + [(0, 0)] * (a.ndim - 2)), group=group)
                              for a in arrays)
    gathered = State(entries, state.tokens_seen, dict(state.metadata))
    mx.eval(gathered.arrays())  # every rank runs the collective now, not lazily on rank 0 alone
    return gathered
