"""The training progress line: step, loss, learning rate, throughput, peak memory and time left."""
from __future__ import annotations

import resource
import sys

import mlx.core as mx

from ..memory import format_bytes


def peak_memory() -> int:
    """Peak bytes in use: MLX's device allocator where it counts (GPU), else the process's peak resident size."""
    peak = mx.get_peak_memory()
    if peak:
        return int(peak)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)  # bytes on macOS, KiB on Linux


def duration(seconds: float) -> str:
    """``1:02:03`` / ``2:03``."""
    s = int(round(max(seconds, 0)))
    h, m = divmod(s, 3600)
    m, s = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def progress_line(step: int, steps: int, loss: float, lr: float, tokens_per_s: float, peak_bytes: int,
                  eta_s: float, val: float | None = None) -> str:
    """``step 20/100 loss 2.345 val 2.400 lr 3.0e-03 12,345 tok/s peak 1.2 GB ETA 1:05``."""
    val_part = f" val {val:.3f}" if val is not None else ""
    return (f"step {step}/{steps} loss {loss:.3f}{val_part} lr {lr:.1e} {tokens_per_s:,.0f} tok/s "
            f"peak {format_bytes(peak_bytes)} ETA {duration(eta_s)}")
