"""Finding and checking a checkpoint's safetensors files before MLX reads them."""
from __future__ import annotations

import os
import re
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


_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?")  # org/name, optionally @revision
_HUB_FILES = ["*.json", "*.safetensors", "*.yaml", "*.txt", "*.model", "tokenizer*"]  # no .bin / .pth twins


def resolve_checkpoint(path_or_repo: str | Path) -> Path:
    """The directory a ``--model`` / ``from_pretrained`` argument names: a local directory, else a Hugging Face
    repo id (``org/name[@revision]``) from the local cache, downloaded (with progress) unless offline."""
    path = Path(path_or_repo).expanduser()
    text = str(path_or_repo)
    if path.is_dir() or not _REPO_ID.fullmatch(text) or text.startswith("."):
        if not path.is_dir():
            raise CheckpointError(f"no checkpoint directory at {text}: give a directory holding config.json and "
                                  "safetensors weights, or a Hugging Face repo id like NX-AI/xLSTM-7b")
        return path
    return _hub_snapshot(*text.partition("@")[::2])


def _hub_cache() -> Path:
    """huggingface_hub's cache as the environment says now (its own constants are read once, at import)."""
    cache = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if cache:
        return Path(cache).expanduser()
    home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")) / "huggingface"
    return Path(home).expanduser() / "hub"


def _hub_snapshot(repo_id: str, revision: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    offline = os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")
    cache = _hub_cache()
    try:
        return Path(snapshot_download(repo_id, revision=revision or None, cache_dir=cache, local_files_only=offline,
                                      allow_patterns=_HUB_FILES))
    except LocalEntryNotFoundError:
        if offline:
            raise CheckpointError(f"{repo_id} is neither a local directory nor in the Hugging Face cache ({cache}), "
                                  "and HF_HUB_OFFLINE is set: unset it to download, or pass a directory") from None
        raise CheckpointError(f"{repo_id} is neither a local directory nor in the Hugging Face cache ({cache}), "
                              "and the Hub could not be reached: check the connection, or pass a directory") from None
    except Exception as exc:  # noqa: BLE001 - repository missing, gated, network and HTTP errors alike
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"could not get {repo_id} from the Hugging Face Hub: {first}") from None
