"""``xlstm-metal import-official``: an official ``xlstm.xLSTMLMModel`` PyTorch checkpoint → a directory that
``from_pretrained`` loads."""
from __future__ import annotations

import sys

from .registry import command


def _import_args(p):
    p.add_argument("config", help="the model's xLSTMLMModelConfig as YAML or JSON (e.g. dataclasses.asdict dumped)")
    p.add_argument("state_dict", help="torch.save'd state_dict (read with weights_only=True)")
    p.add_argument("out", help="directory to write (config.json + model.safetensors)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT once the new one is complete")


@command("import-official", "write a loadable directory from an official xlstm.xLSTMLMModel checkpoint (needs torch)",
         _import_args)
def cmd_import_official(args) -> int:
    from ..checkpoint.import_official import import_official

    out = import_official(args.config, args.state_dict, args.out, overwrite=args.overwrite)
    print(f"wrote {out}", file=sys.stderr)
    return 0
