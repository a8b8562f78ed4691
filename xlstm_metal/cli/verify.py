"""``xlstm-metal verify SPEC``: parity properties of an architecture, as a pass/fail table."""
from __future__ import annotations

from .registry import command


def _args(p):
    p.add_argument("spec", help="spec file, shipped spec name or checkpoint directory (its architecture, random weights)")
    p.add_argument("--seeds", default="0,1", help="comma-separated seeds (weights and inputs)")
    p.add_argument("--seq-len", type=int, default=37)
    p.add_argument("--chunk-sizes", default="1,5,16,64")
    p.add_argument("--rtol", type=float, default=None, help="relative tolerance (default 2e-5, float32)")


@command("verify", "check that chunkwise prefill, step decoding, split prefill and padding agree for a spec", _args)
def cmd_verify(args) -> int:
    from ..checkpoint.load import spec_or_checkpoint
    from ..testing.checks import DEFAULT_RTOL, verify

    report = verify(spec_or_checkpoint(args.spec), seeds=tuple(int(s) for s in args.seeds.split(",")), seq_len=args.seq_len,
                    chunk_sizes=tuple(int(c) for c in args.chunk_sizes.split(",")), rtol=args.rtol or DEFAULT_RTOL)
    print(report)
    return 0 if report.passed else 1
