"""``xlstm-metal convert`` and ``xlstm-metal spec-from-config``."""
from __future__ import annotations

import sys
from pathlib import Path

import yaml

from .registry import command


def _convert_args(p):
    p.add_argument("src", help="checkpoint directory to read")
    p.add_argument("dst", help="new directory to write (must not exist or be empty, unless --overwrite)")
    p.add_argument("--dtype", choices=["bf16", "f16", "f32", "bfloat16", "float16", "float32"],
                   help="weight dtype of the copy (default: the source's)")
    p.add_argument("-q", "--quantize", action="store_true", help="quantize with MLX's affine quantization")
    p.add_argument("--q-bits", type=int, default=4, choices=[2, 3, 4, 5, 6, 8], help="bits per weight with -q")
    p.add_argument("--q-group-size", type=int, default=64, choices=[32, 64, 128],
                   help="weights sharing one scale and bias with -q")
    p.add_argument("--dequantize", action="store_true", help="write a quantized checkpoint in full precision")
    p.add_argument("--fuse-adapters", metavar="ADAPTER_DIR",
                   help="merge these LoRA adapters (from train --lora-rank) into src's weights; a quantized src is "
                        "re-quantized as it was, unless --dequantize")
    p.add_argument("--overwrite", action="store_true", help="replace dst if it exists (once the new one is complete)")


@command("convert", "re-save a checkpoint in another dtype, quantized or dequantized, or with LoRA adapters merged "
                    "(atomic)", _convert_args)
def cmd_convert(args) -> int:
    from ..checkpoint.save import convert
    from ..errors import InputError

    if args.quantize and args.dequantize:
        raise InputError("-q/--quantize and --dequantize contradict each other; choose one")
    if args.fuse_adapters:
        if args.quantize or args.dtype:
            raise InputError("--fuse-adapters keeps src's dtype and quantization (or --dequantize); convert the fused "
                             "checkpoint afterwards for another dtype or quantization")
        from ..train.adapters import fuse_adapters

        out = fuse_adapters(args.src, args.fuse_adapters, args.dst, dequantize=args.dequantize,
                            overwrite=args.overwrite)
    else:
        out = convert(args.src, args.dst, dtype=args.dtype, q_bits=args.q_bits if args.quantize else None,
                      q_group_size=args.q_group_size, overwrite=args.overwrite, dequantize=args.dequantize)
    size = sum(f.stat().st_size for f in Path(out).glob("*.safetensors"))
    merged = f" with the adapters of {args.fuse_adapters} merged" if args.fuse_adapters else ""
    print(f"wrote {out}{merged} ({size / 1e6:.1f} MB of weights)", file=sys.stderr)
    return 0


def _sfc_args(p):
    p.add_argument("path", help="checkpoint directory or config.json")


@command("spec-from-config", "print the wiring spec (YAML) that a checkpoint's config.json describes", _sfc_args)
def cmd_spec_from_config(args) -> int:
    from ..checkpoint.load import checkpoint_spec, read_raw_config

    path = Path(args.path)
    directory = path.parent if path.is_file() else path
    spec, _ = checkpoint_spec(directory, read_raw_config(directory))
    print(spec.read_text() if isinstance(spec, Path) else yaml.safe_dump(spec, sort_keys=False), end="")
    return 0
