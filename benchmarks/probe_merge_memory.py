"""What merging the input projections costs in memory on this device, and why (JSON out).

Why: on CPU merging adds nothing beyond the merged matrices' bytes (the official arrays become views) and peaks at
about one block's projections; on an H200 the first GPU run of the merge tests measured +28 KiB after merging a
tiny model and a peak of four blocks for a larger one. This separates the candidate causes: the allocator
rounding each buffer up (``rounding``: one fresh buffer per projection size, active memory vs bytes asked) and
frees that land late (the peak with and without ``mx.synchronize()`` between blocks)."""
from __future__ import annotations

import argparse
import json

import mlx.core as mx
from mlx.utils import tree_flatten

from xlstm_metal import xLSTMRunner
from xlstm_metal.checkpoint import config_to_spec, xLSTMConfig


def model(dim: int, blocks: int) -> xLSTMRunner:
    spec = config_to_spec(xLSTMConfig.from_dict({"embedding_dim": dim, "num_heads": 4, "num_blocks": blocks,
                                                 "vocab_size": 64, "chunk_size": 8, "use_bias": False,
                                                 "weight_mode": "single"}))
    r = xLSTMRunner.from_spec(spec, seed=0, merge_projections=False)
    mx.eval(r.model.parameters())
    return r


def rounding(sizes) -> dict:
    """Active memory of one fresh buffer of each size (bytes), against the size."""
    out = {}
    for n in sizes:
        mx.synchronize()
        base = mx.get_active_memory()
        a = mx.zeros((n // 4,), mx.float32)
        mx.eval(a)
        out[str(n)] = mx.get_active_memory() - base
        del a
    return out


def merge(dim: int, blocks: int, sync: bool) -> dict:
    r = model(dim, blocks)
    proj = [sum(b[n].weight.nbytes for n in b.projection_names()) for b in r._mergeable_blocks()]
    mx.synchronize()
    mx.clear_cache()
    mx.reset_peak_memory()
    base = mx.get_active_memory()
    for block in r._mergeable_blocks():
        block.merge_projections()
        if sync:
            mx.synchronize()
        mx.clear_cache()
    peak = mx.get_peak_memory() - base
    mx.synchronize()
    return {"dim": dim, "blocks": blocks, "synchronize": sync, "largest_block": max(proj), "projections": sum(proj),
            "peak_over_base": peak, "active_increase": mx.get_active_memory() - base,
            "weights": sum(v.nbytes for _, v in tree_flatten(r.model.parameters()))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out")
    args = ap.parse_args()
    res = {"device": str(mx.default_device()),
           "rounding": rounding([1024, 8192, 16384, 49152, 51200, 65536, 98304, 100000, 1 << 20, 5767168]),
           "merges": [merge(d, b, s) for d, b in ((64, 2), (512, 6)) for s in (False, True)]}
    text = json.dumps(res, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
