"""Finding and checking a checkpoint's safetensors files before MLX reads them."""
from __future__ import annotations

import json
import struct
from pathlib import Path

from ..errors import InputError


class CheckpointError(InputError):
    """The checkpoint directory is incomplete or damaged; the message says which file and how."""


def weight_files(directory: Path) -> list[Path]:
    """The safetensors files of a checkpoint: single file, HF index shards, or ``model_N`` shards."""
    single = directory / "model.safetensors"
    index = directory / "model.safetensors.index.json"
    if index.exists():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{index} is not a valid safetensors index (needs a 'weight_map'): {exc}") from None
        shards = sorted(set(weight_map.values()))
        missing = [s for s in shards if not (directory / s).exists()]
        if missing:
            raise CheckpointError(f"missing shard(s) listed in {index.name}: {', '.join(missing)}")
        return [directory / s for s in shards]
    if single.exists():
        return [single]
    def number(path: Path) -> int:
        n = path.stem.split("_")[-1]
        return int(n) if n.isdigit() else 0

    found = sorted(directory.glob("model_*.safetensors"), key=number) or sorted(directory.glob("*.safetensors"))
    if found:
        return found
    raise CheckpointError(f"no weights in {directory}: expected model.safetensors or model.safetensors.index.json "
                          "with its shards")


def check_safetensors(path: Path) -> dict:
    """Validate the header and the file length; returns the header. Catches truncated downloads."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        raw = fh.read(8)
        if len(raw) < 8:
            raise CheckpointError(f"{path.name} is truncated or not a safetensors file ({size} bytes)")
        (n,) = struct.unpack("<Q", raw)
        if n > size - 8 or n > 100_000_000:
            raise CheckpointError(f"{path.name} is corrupt or truncated: header claims {n} bytes, file has {size}")
        try:
            header = json.loads(fh.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{path.name} has a corrupt header: {exc}") from None
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if 8 + n + end > size:
        raise CheckpointError(f"{path.name} is truncated: tensors need {8 + n + end} bytes, file has {size} "
                              f"(re-download this shard)")
    return header
