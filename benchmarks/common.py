"""What every benchmark script shares: timing a callable and emitting its JSON result."""
from __future__ import annotations

import json
import time
from pathlib import Path


def timed(fn, warm: int = 2, iters: int = 5) -> float:
    """Mean seconds per call of ``fn`` after ``warm`` untimed calls (``fn`` must evaluate its MLX work)."""
    for _ in range(warm):
        fn()
    t = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - t) / iters


def emit(result: dict, out: str | None = None) -> None:
    """Print the result as JSON, and also write it to ``out`` when given."""
    text = json.dumps(result, indent=2)
    print(text)
    if out:
        Path(out).write_text(text + "\n")
