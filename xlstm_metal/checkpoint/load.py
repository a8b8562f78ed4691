"""Reading a Hugging Face style directory: config → graph, strict key checking, weights into a model.

Everything is checked before any weight is read (config values, shard presence and integrity,
the full key set, every shape), so a broken directory fails fast with one clear message. Weights
are then read one shard at a time and cast one tensor at a time, so loading needs about one
shard of memory beyond the model itself. The runner builds itself from what this returns.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_unflatten

from ..distributed.tensor_parallel import take, within
from ..graph import ModelGraph, build_graph
from ..spec import SpecError
from .config import ConfigError, config_to_spec, xLSTMConfig
from .files import CheckpointError, check_safetensors, weight_files
from .official_lm import is_official_lm_config, official_lm_spec
from .sanitize import official_keys, sanitize

SPEC_FILE = "wiring_spec.yaml"  # written next to config.json when a model comes from a custom spec


def read_raw_config(directory: Path) -> dict:
    path = directory / "config.json"
    if not path.exists():
        raise CheckpointError(f"{directory} has no config.json; a checkpoint directory needs config.json "
                              "and safetensors weights")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path} must hold a JSON object")
    return raw


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
            parts = [f"{what} ({len(keys)}): {', '.join(keys[:20])}{' ...' if len(keys) > 20 else ''}"
                     for what, keys in (("missing tensor(s)", missing), ("unknown tensor(s)", unexpected)) if keys]
            raise CheckpointError(f"the weights in {self.directory} do not match config.json: " + "; ".join(parts))
        for name, (f, _, shape, _) in sorted(found.items()):
            key, rows = names[name]
            want = tuple(expected[key].shape)
            want = want if rows is None else (rows,) + want[1:]
            if shape != want:
                raise CheckpointError(f"shape mismatch for '{name}' in {f.name}: config.json implies {want}, "
                                      f"file has {shape}")
        return {key: [found[name][:2] + (rows, found[name][3]) for name, rows in pieces]
                for key, pieces in wanted.items()}

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
            except Exception as exc:  # noqa: BLE001 - MLX raises several types for damaged files
                raise CheckpointError(f"{f.name} could not be read ({exc}); the file is damaged: "
                                      "re-download it") from None
            for key, n, name, segs, part in todo.get(f, ()):
                a = arrays[name] if segs is None else take(arrays[name], segs)
                if mx.issubdtype(a.dtype, mx.floating) and a.dtype != dtype:
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


def open_checkpoint(path: str | Path) -> Checkpoint:
    """Read and check config.json (or the saved wiring spec) and every weight file's header."""
    directory = Path(path)
    if not directory.is_dir():
        raise CheckpointError(f"no checkpoint directory at {directory}")
    raw = read_raw_config(directory)
    spec_path = directory / SPEC_FILE
    if spec_path.exists():  # a custom architecture: the spec is the truth, config.json only carries extras
        graph = build_graph(spec_path)
        cfg: Any = raw
        quant, tie = raw.get("quantization"), bool(raw.get("tie_word_embeddings", False))
    elif is_official_lm_config(raw):  # the xlstm package's xLSTMLMModelConfig, as a dict
        cfg = raw
        try:
            graph = build_graph(official_lm_spec(raw, directory.name, str(directory / "config.json")))
        except SpecError as exc:
            raise ConfigError(f"config.json describes an architecture that does not build: {exc}") from None
        quant, tie = None, raw.get("tie_weights") is True
    else:
        cfg = xLSTMConfig.from_dict(raw)
        try:
            graph = build_graph(config_to_spec(cfg, name=directory.name))
        except SpecError as exc:
            raise ConfigError(f"config.json describes an architecture that does not build: {exc}") from None
        quant, tie = cfg.quantization, cfg.tie_word_embeddings
    dtype = {"bfloat16": "bfloat16", "float16": "float16"}.get(str(raw.get("torch_dtype")), "float32")
    headers = {f: check_safetensors(f) for f in weight_files(directory)}
    return Checkpoint(directory, graph, cfg, dtype, dict(quant) if quant else None, tie, headers)


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
