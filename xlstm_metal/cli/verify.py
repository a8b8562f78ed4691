"""``xlstm-metal verify SPEC``: parity properties of an architecture, as a pass/fail table."""
from __future__ import annotations

from .registry import command
from .values import MAX_SEED, POSITIVE, int_list, number

# relative tolerance per dtype: float32 agrees to rounding; half precision rounds every stored activation
RTOL = {"float32": 2e-5, "bfloat16": 5e-2, "float16": 1e-2}


def _args(p):
    p.add_argument("spec", help="spec file, shipped spec name or checkpoint directory (its architecture, random weights)")
    p.add_argument("--seeds", type=int_list(0, MAX_SEED), default="0,1",
                   help="comma-separated seeds (weights and inputs)")
    p.add_argument("--seq-len", type=POSITIVE, default=37, help="tokens per checked sequence")
    p.add_argument("--chunk-sizes", type=int_list(1), default="1,5,16,64",
                   help="chunkwise kernel chunk sizes compared with step-by-step decoding")
    p.add_argument("--dtype", default="float32", choices=sorted(RTOL),
                   help="weight and compute dtype (the weights must fit in memory; half the size of float32)")
    p.add_argument("--rtol", type=number(0, above=True), default=None,
                   help=f"relative tolerance (default per dtype: {', '.join(f'{k} {v:g}' for k, v in RTOL.items())})")


@command("verify", "check that chunkwise prefill, step decoding, split prefill and padding agree for a spec", _args)
def cmd_verify(args) -> int:
    from ..checkpoint.load import spec_or_checkpoint
    from ..testing.checks import verify

    # (the weights' size is checked against the memory before any is built: xLSTMRunner.from_spec)
    report = verify(spec_or_checkpoint(args.spec), seeds=args.seeds, seq_len=args.seq_len, chunk_sizes=args.chunk_sizes,
                    rtol=args.rtol or RTOL[args.dtype], dtype=args.dtype)
    print(report)
    return 0 if report.passed else 1
