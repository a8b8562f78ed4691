"""Finding and checking a checkpoint's safetensors files before MLX reads them."""
from __future__ import annotations

import json
import os
import re
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
