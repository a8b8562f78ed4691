"""Finding and checking a checkpoint's safetensors files before MLX reads them."""
from __future__ import annotations

from pathlib import Path, PurePosixPath, PureWindowsPath

from .. import files
from ..errors import InputError, shown
from ..tensorfile import read_header

INDEX = "model.safetensors.index.json"


class CheckpointError(InputError):
    """The checkpoint directory is incomplete or damaged; the message says which file and how."""


def read_json(path: Path, error: type[InputError] = CheckpointError):
    return files.read_json(path, error)


def _shard_names(index: Path) -> list[str]:
    """The shard files an index lists, each a plain relative name that stays inside the checkpoint directory."""
    raw = read_json(index)
    weight_map = raw.get("weight_map") if isinstance(raw, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f"{index} is not a valid safetensors index: it needs a non-empty 'weight_map' object "
                              "(tensor name -> shard file)")
    for key, shard in weight_map.items():
        if not isinstance(shard, str) or not shard:
            raise CheckpointError(f"{index} 'weight_map' entry '{shown(key)}': the shard must be a file name, "
                                  f"got {shard!r}")
        if (PurePosixPath(shard).is_absolute() or PureWindowsPath(shard).is_absolute() or "\\" in shard
                or ".." in PurePosixPath(shard).parts or "\0" in shard):
            raise CheckpointError(f"{index} 'weight_map' entry '{shown(key)}' points outside the checkpoint directory "
                                  f"({shard!r}); shards must be files inside it")
    return sorted(set(weight_map.values()))


def weight_files(directory: Path) -> list[Path]:
    """The safetensors files of a checkpoint: single file, HF index shards, or ``model_N`` shards."""
    single = directory / "model.safetensors"
    index = directory / INDEX
    if index.exists():
        shards = _shard_names(index)
        missing = [s for s in shards if not (directory / s).is_file()]
        if missing:
            raise CheckpointError(f"missing shard(s) listed in {index.name}: {', '.join(map(shown, missing))}")
        return [directory / s for s in shards]
    if single.exists():
        return [single]

    def number(path: Path) -> int:
        n = path.stem.split("_")[-1]
        return int(n) if n.isdigit() else 0

    found = sorted(directory.glob("model_*.safetensors"), key=number) or sorted(directory.glob("*.safetensors"))
    if found:
        return found
    raise CheckpointError(f"no weights in {directory}: expected model.safetensors or {INDEX} with its shards")


def check_safetensors(path: Path) -> dict:
    """Validate the header against the file's length (catches truncated downloads); returns the header."""
    return read_header(path, CheckpointError)
