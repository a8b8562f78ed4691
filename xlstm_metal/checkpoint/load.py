"""Reading a Hugging Face style directory: config → graph, strict key checking, weights into a model.

Everything is checked before any weight is read (config values, shard presence and integrity,
the full key set, every shape), so a broken directory fails fast with one clear message. Weights
are then read one shard at a time and cast one tensor at a time, so loading needs about one
shard of memory beyond the model itself. The runner builds itself from what this returns.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_unflatten

from ..distributed.tensor_parallel import take, within
from ..errors import shown
from ..files import current_dir
from ..graph import ModelGraph, build_graph
from ..spec import SpecError
from ..tensorfile import FLOAT_DTYPES
from .config import ConfigError, check_quantization, config_to_spec, xLSTMConfig
from .files import CheckpointError, check_safetensors, read_json, resolve_checkpoint, weight_files
from .official_lm import is_official_lm_config, official_lm_spec
from .sanitize import official_keys, sanitize

SPEC_FILE = "wiring_spec.yaml"  # written next to config.json when a model comes from a custom spec


def read_raw_config(directory: Path) -> dict:
    path = directory / "config.json"
    if not path.exists():
        raise CheckpointError(f"{directory} has no config.json; a checkpoint directory needs config.json "
                              "and safetensors weights")
    raw = read_json(path)
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path} must hold a JSON object")
    return raw


def checkpoint_dtype(raw: dict) -> str:
    """The weights' dtype a config.json names: ``dtype`` (transformers >= 5) or ``torch_dtype`` (older)."""
    named = raw.get("dtype", raw.get("torch_dtype"))
    return {"bfloat16": "bfloat16", "float16": "float16"}.get(str(named).removeprefix("torch."), "float32")


# what a model's parameter key is read from, per piece: (file, key in the file, rows or None, quantize part or None)
Index = dict[str, list[tuple[Path, str, int | None, int | None]]]


@dataclass
class Checkpoint:
    """A checked checkpoint directory: its graph, config, dtype and quantization, and its files' headers."""

    directory: Path
    graph: ModelGraph
    config: Any  # xLSTMConfig, or the raw dict for a model from a custom spec
    dtype: str
    quantization: dict | None
    tied: bool
    headers: dict[Path, dict]
    identity: tuple = field(default=(), repr=False)  # of the directory when opened: a swap changes it

    def unchanged(self) -> None:
        """Raise ``CheckpointChanged`` if a writer swapped in another version since ``open_checkpoint``."""
        if self.identity and _identity(self.directory) != self.identity:
            raise CheckpointChanged(f"{self.directory} changed while it was read")

    def index(self, model: nn.Module) -> Index:
        """Strictly match the files to ``model`` (built from ``graph``, quantized as the checkpoint says):
        every official key present, none unknown, every shape right; raises ``CheckpointError`` naming them."""
        expected = dict(tree_flatten(model.parameters()))
        wanted = official_keys(self.graph)
        found = sanitize({k: (f, k, tuple(v["shape"]), None) for f, header in self.headers.items()
                          for k, v in header.items() if k != "__metadata__"}, tie_word_embeddings=self.tied)
        names = {name: (key, rows) for key, pieces in wanted.items() for name, rows in pieces}
        self._quantize_full_precision_pieces(found, names, expected)
        missing, unexpected = sorted(set(names) - set(found)), sorted(set(found) - set(names))
        if missing or unexpected:
            parts = [f"{what} ({len(keys)}): {', '.join(map(shown, keys[:20]))}{' ...' if len(keys) > 20 else ''}"
                     for what, keys in (("missing tensor(s)", missing), ("unknown tensor(s)", unexpected)) if keys]
            raise CheckpointError(f"the weights in {self.directory} do not match config.json: " + "; ".join(parts))
        for name, (f, stored, shape, part) in sorted(found.items()):
            key, rows = names[name]
            self._check_dtype(f, stored, expected[key].dtype if part is None else mx.float32)
            want = tuple(expected[key].shape)
            want = want if rows is None else (rows,) + want[1:]
            if shape != want:
                raise CheckpointError(f"shape mismatch for '{shown(name)}' in {f.name}: config.json implies {want}, "
                                      f"file has {shape}")
        return {key: [found[name][:2] + (rows, found[name][3]) for name, rows in pieces]
                for key, pieces in wanted.items()}

    def _check_dtype(self, f: Path, name: str, want: mx.Dtype) -> None:
        """A float slot needs a float tensor, a packed quantized one the exact integer type."""
        have = self.headers[f][name]["dtype"]
        ok = have in FLOAT_DTYPES if mx.issubdtype(want, mx.floating) else _same_int(have, want)
        if not ok:
            kind = "a float tensor (F32, F16 or BF16)" if mx.issubdtype(want, mx.floating) else f"{want}"
            raise CheckpointError(f"{f} tensor '{shown(name)}' is {have}, but this slot needs {kind}; the file "
                                  "does not match config.json")

    def _quantize_full_precision_pieces(self, found: dict, names: dict, expected: dict) -> None:
        """A quantized checkpoint may hold a piece of a merged array in full precision (e.g. a tiny gate
        projection): it is quantized as it is read (entries then say which output of ``mx.quantize`` they are:
        0 weight, 1 scales, 2 biases)."""
        q, stored_as = self.quantization, dict(found)
        for name in [n for n in set(names) - set(found) if q and n.endswith((".scales", ".biases"))]:
            base = name.rsplit(".", 1)[0] + ".weight"
            key, rows = names[name]
            f, stored, shape, _ = stored_as.get(base, (None, None, None, None))
            if rows is None or shape != (rows, expected[key].shape[1] * q["group_size"]):
                continue
            wkey = names[base][0]
            found[base] = (f, stored, (rows,) + tuple(expected[wkey].shape[1:]), 0)
            found[name] = (f, stored, (rows,) + tuple(expected[key].shape[1:]), 1 if name.endswith(".scales") else 2)

    def read(self, model: nn.Module, index: Index, *, dtype: mx.Dtype, slices: dict | None = None,
             progress: bool | None = None) -> None:
        """Read the weights into ``model``, cast to ``dtype``; ``slices`` (key -> row/column pieces, from
        ``distributed.shard_heads``): only those parts of each tensor are ever materialised."""
        slices = slices or {}
        todo: dict[Path, list] = {}
        count: dict[str, int] = {}
        for key, pieces in index.items():
            if slices.get(key) == []:  # zeros on this rank (an output bias that rank 0 adds)
                continue
            start = 0
            for n, (f, name, rows, part) in enumerate(pieces):
                segs, at = slices.get(key), start
                start += rows or 0
                if segs is not None and rows is not None and segs[0][0] == 0:
                    segs = within(segs, at, rows)
                    if not segs:  # none of this rank's rows in this tensor
                        continue
                todo.setdefault(f, []).append((key, n, name, segs, part))
                count[key] = count.get(key, 0) + 1
        parts: dict[str, dict[int, mx.array]] = {}
        bar = _Progress(len(self.headers), progress if progress is not None else len(self.headers) > 1)
        for f in self.headers:
            try:
                arrays = mx.load(str(f))
            except Exception as exc:  # noqa: BLE001 - MLX raises several types for unreadable files
                self.unchanged()
                raise CheckpointError(f"{f} could not be read: {exc}") from None
            for key, n, name, segs, part in todo.get(f, ()):
                a = arrays[name] if segs is None else take(arrays[name], segs)
                if mx.issubdtype(a.dtype, mx.floating):
                    if not mx.all(mx.isfinite(a)).item():
                        self.unchanged()
                        raise CheckpointError(f"{f} tensor '{shown(name)}' holds NaN or Inf values; the checkpoint is "
                                              "damaged (or was saved after training diverged)")
                    if a.dtype != dtype:
                        a = a.astype(dtype)
                if part is not None:
                    a = mx.quantize(a, self.quantization["group_size"], self.quantization["bits"],
                                    mode=self.quantization.get("mode", "affine"))[part]
                mx.eval(a)
                got = parts.setdefault(key, {})
                got[n] = a
                if len(got) == count[key]:  # every piece read: concatenated in row order
                    a = mx.concatenate([got[i] for i in sorted(got)]) if len(got) > 1 else a
                    mx.eval(a)
                    model.update(tree_unflatten([(key, a)]), strict=False)
                    del parts[key]
            del arrays
            bar.update(f.name)
        self.unchanged()


def checkpoint_spec(directory: Path, raw: dict | None = None) -> tuple[Any, Any]:
    """A checkpoint directory's architecture: (the spec, for ``build_graph``; its config). A saved
    ``wiring_spec.yaml`` is the truth (config.json then only carries extras: the raw dict is the config);
    an official ``xLSTMLMModelConfig`` dict gives the paper's model (the raw dict is the config); otherwise
    config.json describes an xLSTMLarge model (an ``xLSTMConfig``, spec from ``config_to_spec``)."""
    raw = read_raw_config(directory) if raw is None else raw
    if (directory / SPEC_FILE).exists():
        return directory / SPEC_FILE, raw
    if is_official_lm_config(raw):
        return official_lm_spec(raw, directory.name, str(directory / "config.json")), raw
    cfg = xLSTMConfig.from_dict(raw)
    return config_to_spec(cfg, name=directory.name), cfg


def spec_or_checkpoint(arg: Any) -> Any:
    """What a command's SPEC argument names: a checkpoint directory (or its config.json) stands for its
    architecture; anything else (spec file, shipped name, YAML) is passed on unchanged."""
    path = Path(arg) if isinstance(arg, (str, Path)) and "\n" not in str(arg) else None
    if path is not None and path.name == "config.json" and path.is_file():
        path = path.parent
    if path is None or not (path / "config.json").is_file():
        return arg
    return checkpoint_spec(path)[0]


def open_checkpoint(path: str | Path) -> Checkpoint:
    """Read and check config.json (or the saved wiring spec) and every weight file's header."""
    local = current_dir(Path(path).expanduser())
    directory = local if local.is_dir() else resolve_checkpoint(path)
    identity = _identity(directory)
    raw = read_raw_config(directory)
    try:
        spec, cfg = checkpoint_spec(directory, raw)
    except ConfigError as exc:  # its message starts with "config.json": say which one
        raise ConfigError(f"{directory}{os.sep}{exc}" if str(exc).startswith("config.json") else str(exc)) from None
    try:
        graph = build_graph(spec)
    except SpecError as exc:
        if isinstance(spec, Path):
            raise
        raise ConfigError(f"config.json describes an architecture that does not build: {exc}") from None
    if isinstance(cfg, xLSTMConfig):
        quant, tie = cfg.quantization, cfg.tie_word_embeddings
    elif is_official_lm_config(raw):
        quant, tie = None, raw.get("tie_weights") is True
    else:
        quant, tie = raw.get("quantization"), bool(raw.get("tie_word_embeddings", False))
        try:
            check_quantization(quant)
        except ConfigError as exc:
            raise ConfigError(f"{directory}{os.sep}{exc}") from None
    dtype = checkpoint_dtype(raw)
    headers = {f: check_safetensors(f) for f in weight_files(directory)}
    return Checkpoint(directory, graph, cfg, dtype, dict(quant) if quant else None, tie, headers, identity)


class CheckpointChanged(CheckpointError):
    """A writer replaced the directory while it was read; reading again gives one consistent version."""


def _identity(directory: Path) -> tuple:
    try:
        st = os.stat(directory)
    except OSError:
        return ()
    return st.st_dev, st.st_ino, st.st_ctime_ns


def _same_int(have: str, want: mx.Dtype) -> bool:
    names = {mx.uint32: "U32", mx.uint8: "U8", mx.int32: "I32", mx.uint16: "U16", mx.int64: "I64", mx.uint64: "U64"}
    return names.get(want) == have


T = TypeVar("T")


def consistently(path: str | Path, load: Callable[[], T], attempts: int = 5) -> T:
    """``load()`` again while a writer swaps the checkpoint under it, so that config, weights and tokenizer all
    come from one version."""
    for attempt in range(attempts):
        try:
            return load()
        except CheckpointChanged:
            time.sleep(0.05 * (attempt + 1))
    raise CheckpointError(f"{path} kept changing while it was read (another process is writing it); try again")


class _Progress:
    def __init__(self, total: int, enabled: bool):
        self.total, self.enabled, self.done = total, enabled and total > 0, 0

    def update(self, name: str) -> None:
        self.done += 1
        if self.enabled:
            width = 30
            filled = int(width * self.done / self.total)
            print(f"\rloading weights [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} {name}",
                  end="" if self.done < self.total else "\n", file=sys.stderr, flush=True)


def load_tokenizer(directory: Path):
    if not (directory / "tokenizer.json").exists():
        return None
    from ..generation.tokenizer import TokenizerWrapper

    return TokenizerWrapper.from_dir(directory)
