"""MLX's cumulative sum on the GPU, on strided views vs contiguous arrays, after NaN-poisoning the allocator
cache (probe_gpu_ops.poison), against the CPU. bisect_mma_operands.py found that, on MLX-CUDA 0.32.4, the
chunk-entry log weights ``cumsum(g[..., :-1])`` of ``g = b[..., -1]`` (a strided view) came out of memory never
written when computed inside the kernel preparation's lazy graph; alone, as here, every variant was exact on an
H100 (so the fault needs the surrounding graph). Prints one JSON object: per variant and shape, the worst difference ("nonfinite" = poisoned memory read).

    python benchmarks/probe_scan_views.py
"""
from __future__ import annotations

import mlx.core as mx
import numpy as np
from common import emit
from probe_gpu_ops import poison

VARIANTS = {
    "cumsum(view[..., :-1])": lambda g: mx.cumsum(g[..., :-1], axis=-1),
    "cumsum(view) inclusive": lambda g: mx.cumsum(g, axis=-1),
    "cumsum(view, exclusive)": lambda g: mx.cumsum(g, axis=-1, inclusive=False),
    "cumsum(contiguous(view), exclusive)": lambda g: mx.cumsum(mx.contiguous(g), axis=-1, inclusive=False),
    "cumsum(contiguous(view)[..., :-1])": lambda g: mx.cumsum(mx.contiguous(g)[..., :-1], axis=-1),
    "cumsum(contiguous, reverse, exclusive)": lambda g: mx.cumsum(mx.contiguous(g), axis=-1, reverse=True, inclusive=False),
    "cumsum(contiguous, axis -2)": lambda g: mx.cumsum(mx.contiguous(g)[..., None] * mx.ones((1, 1, 1, 3)), axis=-2),
}


def main():
    rng = np.random.default_rng(0)
    res = {"device": str(mx.default_device()), "worst": {}}
    for lead in ((1, 1), (2, 3)):
        for NC in (1, 2, 3, 5, 17, 130):
            b = mx.array(rng.normal(size=lead + (NC, 64)).astype(np.float32))
            mx.eval(b)
            for name, fn in VARIANTS.items():
                if NC == 1 and "[..., :-1]" in name:
                    continue
                with mx.stream(mx.cpu):
                    want = np.array(fn(b[..., -1]))
                worst = 0.0
                for _ in range(3):
                    poison(24)
                    got = np.array(fn(b[..., -1]))
                    if not np.isfinite(got).all():
                        worst = "nonfinite"
                        break
                    worst = max(worst, float(np.abs(got - want).max()))
                res["worst"].setdefault(name, {})[f"{lead} NC{NC}"] = worst
    res["bad"] = {n: {s: e for s, e in v.items() if e == "nonfinite" or e > 1e-5} for n, v in res["worst"].items()}
    res["bad"] = {n: v for n, v in res["bad"].items() if v}
    emit(res)


if __name__ == "__main__":
    main()
