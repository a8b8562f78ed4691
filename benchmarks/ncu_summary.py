"""GPU time per kernel name from an ``ncu --csv --metrics gpu__time_duration.sum`` log (stdin):
total microseconds, launches and share, largest first, as one JSON object (``--calls`` divides the
totals by the number of profiled calls of the measured function).

    ncu --csv --metrics gpu__time_duration.sum python3 profile_chunkwise.py ... | python3 ncu_summary.py --calls 3
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict


def summarise(lines, calls: int = 1, top: int = 25) -> dict:
    rows = [r for r in csv.reader(line for line in lines if line.startswith('"'))]
    if not rows:
        raise SystemExit("no ncu CSV rows on stdin (was the program profiled, and did it launch kernels?)")
    head, body = rows[0], rows[1:]
    name, unit, value = head.index("Kernel Name"), head.index("Metric Unit"), head.index("Metric Value")
    scale = {"ns": 1e-3, "nsecond": 1e-3, "us": 1.0, "usecond": 1.0, "ms": 1e3, "msecond": 1e3, "s": 1e6, "second": 1e6}
    total, count = defaultdict(float), defaultdict(int)
    for r in body:
        us = float(r[value].replace(",", "")) * scale[r[unit]]
        total[r[name][:90]] += us / calls
        count[r[name][:90]] += 1
    all_us = sum(total.values())
    ranked = sorted(total, key=total.get, reverse=True)[:top]
    return {"total_us_per_call": round(all_us, 1),
            "kernels": [{"name": k, "us_per_call": round(total[k], 1), "launches": count[k] / calls,
                         "share": round(total[k] / all_us, 3)} for k in ranked]}


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--calls", type=int, default=1)
    a = p.parse_args(argv)
    print(json.dumps(summarise(sys.stdin, a.calls), indent=1))


if __name__ == "__main__":
    main()
