"""``xlstm-metal convert`` and ``xlstm-metal spec-from-config``."""
from __future__ import annotations

import sys
from pathlib import Path

import yaml

from .registry import command


def _convert_args(p):
    p.add_argument("src", help="checkpoint directory to read")
    p.add_argument("dst", help="new directory to write (must not exist or be empty)")
    p.add_argument("--dtype", choices=["bf16", "f16", "f32", "bfloat16", "float16", "float32"], help="weight dtype")
    p.add_argument("-q", "--quantize", action="store_true", help="quantize with MLX's affine quantization")
    p.add_argument("--q-bits", type=int, default=4, choices=[2, 3, 4, 5, 6, 8])
    p.add_argument("--q-group-size", type=int, default=64, choices=[32, 64, 128])


@command("convert", "re-save a checkpoint in another dtype and/or quantized (atomic)", _convert_args)
def cmd_convert(args) -> int:
    from ..checkpoint.save import convert

    out = convert(args.src, args.dst, dtype=args.dtype, q_bits=args.q_bits if args.quantize else None,
                  q_group_size=args.q_group_size)
    size = sum(f.stat().st_size for f in Path(out).glob("*.safetensors"))
    print(f"wrote {out} ({size / 1e6:.1f} MB of weights)", file=sys.stderr)
    return 0


def _sfc_args(p):
    p.add_argument("path", help="checkpoint directory or config.json")


@command("spec-from-config", "print the wiring spec (YAML) that a checkpoint's config.json describes", _sfc_args)
def cmd_spec_from_config(args) -> int:
    from ..checkpoint.config import config_to_spec, xLSTMConfig
    from ..checkpoint.load import read_raw_config
    from ..checkpoint.official_lm import is_official_lm_config, official_lm_spec

    path = Path(args.path)
    directory = path.parent if path.is_file() else path
    raw = read_raw_config(directory)
    if is_official_lm_config(raw):  # the xlstm package's xLSTMLMModelConfig
        spec = official_lm_spec(raw, directory.name, str(directory / "config.json"))
    else:
        spec = config_to_spec(xLSTMConfig.from_dict(raw), name=directory.name)
    print(yaml.safe_dump(spec, sort_keys=False), end="")
    return 0
