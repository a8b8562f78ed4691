"""The process group and how work is split across its ranks."""
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
