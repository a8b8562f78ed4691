"""Past one machine with ``mx.distributed`` (launched by ``mlx.launch``: ring, MPI or NCCL).

- Data parallel training: each rank trains on its slice of the global batch; gradients are
  averaged with ``mlx.nn.average_gradients``; rank 0 writes checkpoints.
- Head-parallel inference: ``shard_heads(runner)`` gives each rank a subset of the mLSTM heads and
  of the feed-forward width; partial outputs are summed across ranks.
"""
from __future__ import annotations

from .group import split, world
from .tensor_parallel import ShardInfo, gather_state, shard_heads

__all__ = ["ShardInfo", "gather_state", "shard_heads", "split", "world"]
