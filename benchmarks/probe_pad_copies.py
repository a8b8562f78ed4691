"""Which small MLX operation reads memory it never wrote on this device? Each operation the tensor-core
kernel's preparation uses (pads, transposes, concatenations, cumulative sums over a middle axis, small
matmuls, reductions), on the shapes of a failing property case, evaluated on the GPU right after the
allocator's cache was filled with NaN (probe_gpu_ops.poison), against the CPU. Prints one JSON object:
the operations whose GPU result differs, with the largest difference (NaN: read poisoned memory).

    python benchmarks/probe_pad_copies.py
"""
from __future__ import annotations

import mlx.core as mx
import numpy as np
from common import emit
from probe_gpu_ops import poison

from xlstm_metal.kernels.mlstm import mma_chunkwise as mm
from xlstm_metal.kernels.mlstm.native import _segment_sums


def cases(rng):
    r = lambda *s: mx.array(rng.normal(size=s).astype(np.float32))  # noqa: E731
    for DK, DV, NC, L in ((14, 7, 2, 64), (5, 6, 4, 64), (14, 2, 4, 50), (2, 4, 3, 64), (44, 40, 3, 16)):
        tag = f"DK{DK} DV{DV} NC{NC} L{L}"
        q, v, x, g = r(1, 1, NC, L, DK), r(1, 1, NC, L, DV), r(1, 1, NC, L), r(1, 1, NC)
        yield f"pad q last {tag}", lambda q=q, DK=DK: mm._pad(q, (-(-DK // 8) * 8,))
        yield f"pad v^T {tag}", lambda v=v, L=L, DV=DV: mm._pad(v.swapaxes(-1, -2), (-(-DV // 16) * 16, -(-L // 8) * 8))
        yield f"pad C0 {tag}", lambda DK=DK, DV=DV: mm._pad(mx.zeros((1, DK, DV)), (-(-DK // 8) * 8, -(-DV // 16) * 16))
        yield f"q k^T {tag}", lambda q=q: q @ q.swapaxes(-1, -2)
        yield f"P v {tag}", lambda q=q, v=v: (q @ q.swapaxes(-1, -2)) @ v
        yield f"segment sums L {tag}", lambda x=x: _segment_sums(x)
        yield f"segment sums NC {tag}", lambda g=g: _segment_sums(g)
        yield f"cumsum {tag}", lambda x=x: mx.cumsum(x, axis=-1)
        yield f"A n_loc {tag}", lambda g=g, q=q: mx.exp(_segment_sums(g)) @ q[..., 0, :]
        yield f"sum q*n {tag}", lambda q=q: mx.sum(q * q[..., :1, :], axis=-1)
        yield f"k^T v {tag}", lambda q=q, v=v: q.swapaxes(-1, -2) @ v
        i, f = r(1, 1, NC * L) * 3, r(1, 1, NC * L) + 2
        mask = mx.array(rng.random((1, NC * L)) > 0.3)
        state = (r(1, 1, DK, DV), r(1, 1, DK), r(1, 1))
        qq, kk, vv = q.reshape(1, 1, NC * L, DK), v[..., :1].reshape(1, 1, NC * L, 1) * q.reshape(1, 1, NC * L, DK), v.reshape(1, 1, NC * L, DV)

        def operands(qq=qq, kk=kk, vv=vv, i=i, f=f, state=state, mask=mask, L=L):
            ops, n, m = mm._operands(qq, kk, vv, i, f, state, mask, L, 1e-6, mm.TILE_DV)
            return mx.concatenate([a.reshape(-1) for a in (*ops.values(), n, m)])
        yield f"all operands {tag}", operands
        yield f"concat -inf {tag}", lambda g=g: mx.concatenate([mx.full((1, 1, 1, g.shape[-1]), -mx.inf), _segment_sums(g)[..., :-1, :]], axis=-2)


def main():
    rng = np.random.default_rng(0)
    res = {"device": str(mx.default_device()), "differs": {}, "ops": 0}
    for name, fn in cases(rng):
        with mx.stream(mx.cpu):
            want = np.array(fn())
        for _ in range(3):
            poison(24)
            got = np.array(fn())
            res["ops"] += 1
            bad = np.isfinite(want)
            err = float(np.abs(got[bad] - want[bad]).max()) if bad.any() else 0.0
            if not np.array_equal(np.isfinite(got), np.isfinite(want)):
                err = float("nan")
            if not err <= 1e-4 * max(1.0, float(np.abs(want[bad]).max() if bad.any() else 0)):
                res["differs"][name] = err
    emit(res)


if __name__ == "__main__":
    main()
