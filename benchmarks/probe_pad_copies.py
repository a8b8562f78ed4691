"""Do MLX's padding copies give the same bits on this device as numpy? Pads, concatenations and slice
updates of small arrays whose rows are not a multiple of 16 bytes, repeated (a read of memory the copy
never wrote shows as run-to-run differences). Prints one JSON object: worst |error| per method and width.

    python benchmarks/probe_pad_copies.py
"""
from __future__ import annotations

import mlx.core as mx
import numpy as np
from common import emit


def methods(x, w):
    pad_last = [(0, 0)] * (x.ndim - 1) + [(0, w)]

    def slice_update(x):
        out = mx.zeros(x.shape[:-1] + (x.shape[-1] + w,), x.dtype)
        out[..., : x.shape[-1]] = x
        return out

    return {
        "pad_last": lambda: mx.pad(x, pad_last),
        "pad_last_of_transposed": lambda: mx.pad(x.swapaxes(-1, -2), [(0, 0)] * (x.ndim - 1) + [(0, w)]),
        "pad_two_last": lambda: mx.pad(x, [(0, 0)] * (x.ndim - 2) + [(0, 3), (0, w)]),
        "concatenate_last": lambda: mx.concatenate([x, mx.zeros(x.shape[:-1] + (w,), x.dtype)], axis=-1),
        "slice_update_last": lambda: slice_update(x),
        "pad_last_compiled": lambda: mx.compile(lambda a: mx.pad(a * 1.0, pad_last))(x),
    }


def expected(name, x, w):
    a = np.array(x)
    if name == "pad_last_of_transposed":
        a = np.swapaxes(a, -1, -2)
    if name == "pad_two_last":
        return np.pad(a, [(0, 0)] * (a.ndim - 2) + [(0, 3), (0, w)])
    return np.pad(a, [(0, 0)] * (a.ndim - 1) + [(0, w)])


def main():
    rng = np.random.default_rng(0)
    res = {"device": str(mx.default_device()), "worst": {}}
    for dtype in (mx.float32, mx.bfloat16):
        for width in range(1, 18):
            for lead in ((1, 2, 64), (1, 16), (2, 3, 37)):
                x = mx.array(rng.normal(size=lead + (width,)).astype(np.float32)).astype(dtype)
                mx.eval(x)
                w = (-width) % 16 or 16
                for name, fn in methods(x, w).items():
                    want = expected(name, x.astype(mx.float32), w)
                    for _ in range(5):
                        junk = mx.full((1 << 20,), float("nan"))  # leave NaNs in freed memory
                        mx.eval(junk)
                        del junk
                        got = np.array(fn().astype(mx.float32))
                        err = float(np.nanmax(np.abs(got - want))) if got.shape == want.shape else float("inf")
                        if not np.isfinite(got).all():
                            err = float("nan")
                        key = f"{name} {str(dtype).split('.')[-1]}"
                        prev = res["worst"].setdefault(key, {})
                        if err != 0.0 and (str(width) not in prev or not (prev[str(width)] >= err)):
                            prev[str(width)] = err
    res["bad"] = {k: v for k, v in res["worst"].items() if v}
    emit(res)


if __name__ == "__main__":
    main()
