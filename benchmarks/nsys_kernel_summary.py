"""GPU time per kernel from ``nsys stats -r cuda_gpu_kern_sum -f csv`` (stdin), per decoded token: microseconds,
launches and share, largest first, plus the total GPU-busy time per token, as one JSON object. Set beside the
wall time per token (``profile_decode.py``), it says whether a decode step waits on the GPU's work or on
launching it.

    nsys stats -r cuda_gpu_kern_sum -f csv decode.nsys-rep | python3 nsys_kernel_summary.py --tokens 40
"""
from __future__ import annotations

import argparse
import csv
import json
import sys


def summarise(lines, tokens: int, top: int = 20) -> dict:
    rows = list(csv.reader(line for line in lines if line.count(",") >= 5))
    head = next((i for i, r in enumerate(rows) if "Total Time (ns)" in r and "Name" in r), None)
    if head is None:
        raise SystemExit("no cuda_gpu_kern_sum CSV on stdin (did the program launch kernels under nsys?)")
    cols = rows[head]
    t, n, name = cols.index("Total Time (ns)"), cols.index("Instances"), cols.index("Name")
    kernels = [(r[name][:100], float(r[t]) / 1e3 / tokens, int(r[n]) / tokens) for r in rows[head + 1:] if len(r) == len(cols)]
    total = sum(us for _, us, _ in kernels)
    kernels.sort(key=lambda k: -k[1])
    return {"tokens": tokens, "gpu_busy_us_per_token": round(total, 1),
            "launches_per_token": round(sum(c for _, _, c in kernels), 1),
            "kernels": [{"name": k, "us_per_token": round(us, 2), "launches_per_token": round(c, 2),
                         "share": round(us / total, 4)} for k, us, c in kernels[:top]]}


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--tokens", type=int, required=True)
    p.add_argument("--top", type=int, default=20)
    a = p.parse_args(argv)
    print(json.dumps(summarise(sys.stdin.read().splitlines(), a.tokens, a.top), indent=2))


if __name__ == "__main__":
    main()
