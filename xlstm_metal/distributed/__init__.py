"""Past one machine with ``mx.distributed`` (launched by ``mlx.launch``: ring, MPI or NCCL).

- Data parallel training: each rank trains on its slice of the global batch; gradients are
  averaged with ``mlx.nn.average_gradients``; rank 0 writes checkpoints.
- Head-parallel inference: ``shard_heads(runner)`` gives each rank a subset of the mLSTM heads and
  of the feed-forward width; partial outputs are summed across ranks.
"""
from __future__ import annotations

import mlx.core as mx


def world():
    """The distributed group this process belongs to (size 1 when not launched by mlx.launch)."""
    return mx.distributed.init(strict=False)


def split(n: int, size: int, rank: int) -> tuple[int, int]:
    """[start, end) of rank's share of n items; uneven splits give the first ranks one more."""
    base, extra = divmod(n, size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


from .tensor_parallel import ShardInfo, gather_state, shard_heads  # noqa: E402

__all__ = ["ShardInfo", "gather_state", "shard_heads", "split", "world"]
