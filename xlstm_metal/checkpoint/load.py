"""Loading a Hugging Face style directory into an ``xLSTMRunner``.

Everything is checked before any weight is read (config values, shard presence and integrity,
the full key set, every shape), so a broken directory fails fast with one clear message. Weights
are then read one shard at a time and cast one tensor at a time, so loading needs about one
shard of memory beyond the model itself.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_unflatten

from ..graph import build_graph
from ..spec import SpecError
from .config import ConfigError, config_to_spec, xLSTMConfig
from .files import CheckpointError, check_safetensors, weight_files
from .sanitize import sanitize

SPEC_FILE = "wiring_spec.yaml"  # written next to config.json when a model comes from a custom spec

_ST_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "U32": "uint32", "I32": "int32", "F64": "float64",
              "U8": "uint8", "I64": "int64"}


def read_raw_config(directory: Path) -> dict:
    path = directory / "config.json"
    if not path.exists():
        raise CheckpointError(f"{directory} has no config.json; a checkpoint directory needs config.json and safetensors weights")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path} must hold a JSON object")
    return raw


def read_config(directory: Path) -> xLSTMConfig:
    return xLSTMConfig.from_dict(read_raw_config(Path(directory)))


def quantize_predicate(group_size: int):
    """Quantise every layer whose rows split into whole groups (tiny gate projections stay exact)."""
    def predicate(path: str, module: nn.Module) -> bool:
        w = getattr(module, "weight", None) if hasattr(module, "to_quantized") else None
        return w is not None and w.ndim == 2 and w.shape[-1] % group_size == 0 and w.shape[0] >= 8
    return predicate


def apply_quantization(model: nn.Module, q: dict) -> None:
    nn.quantize(model, group_size=q["group_size"], bits=q["bits"], mode=q.get("mode", "affine"),
                class_predicate=quantize_predicate(q["group_size"]))


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


def load_pretrained(path: str | Path, *, dtype: Any = None, progress: bool | None = None, compile: bool = True,
                    tokenizer: bool = True, shard: Any = None, **runner_kw):
    """``xLSTMRunner`` for a checkpoint directory (config.json + safetensors [+ tokenizer.json]).

    ``shard``: a distributed group (or True for the launched world): each rank reads only its
    heads / FFN columns of every tensor (head-parallel inference).
    ``merge_projections`` (default True): merge each block's input projections once the weights
    are loaded (``xLSTMRunner.merge_projections``); keys are checked and read under the official names.
    """
    from ..runner import xLSTMRunner

    directory = Path(path)
    if not directory.is_dir():
        raise CheckpointError(f"no checkpoint directory at {directory}")
    raw = read_raw_config(directory)
    spec_path = directory / SPEC_FILE
    if spec_path.exists():  # a custom architecture: the spec is the truth, config.json only carries extras
        graph = build_graph(spec_path)
        cfg: Any = raw
        quant = raw.get("quantization")
        tie = bool(raw.get("tie_word_embeddings", False))
    else:
        cfg = xLSTMConfig.from_dict(raw)
        try:
            graph = build_graph(config_to_spec(cfg, name=directory.name))
        except SpecError as exc:
            raise ConfigError(f"config.json describes an architecture that does not build: {exc}") from None
        quant, tie = cfg.quantization, cfg.tie_word_embeddings
    if dtype is None:
        dtype = {"bfloat16": "bfloat16", "float16": "float16"}.get(str(raw.get("torch_dtype")), "float32")
    merge = runner_kw.pop("merge_projections", True)
    runner = xLSTMRunner(graph, dtype=dtype, config=cfg, compile=compile, merge_projections=False, **runner_kw)
    if quant:
        apply_quantization(runner.model, quant)
        runner.quantization = dict(quant)

    files = weight_files(directory)
    headers = {f: check_safetensors(f) for f in files}
    expected = {k: v for k, v in tree_flatten(runner.model.parameters())}
    slices: dict = {}
    if shard:
        from ..distributed import shard_heads, world

        shard_heads(runner, world() if shard is True else shard)
        slices = runner.shard_slices
    found: dict[str, tuple[Path, str, tuple]] = {}
    for f, header in headers.items():
        names = {k: k for k in header if k != "__metadata__"}
        renamed = sanitize(names, tie_word_embeddings=False)
        for new_key, old_key in renamed.items():
            info = header[old_key]
            found[new_key] = (f, old_key, tuple(info["shape"]), info["dtype"])
    if tie and "lm_head.weight" not in found and "backbone.embeddings.weight" in found:
        found["lm_head.weight"] = found["backbone.embeddings.weight"]
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing tensor(s) ({len(missing)}): {', '.join(missing[:20])}{' ...' if len(missing) > 20 else ''}")
        if unexpected:
            parts.append(f"unknown tensor(s) ({len(unexpected)}): {', '.join(unexpected[:20])}{' ...' if len(unexpected) > 20 else ''}")
        raise CheckpointError(f"the weights in {directory} do not match config.json: " + "; ".join(parts))
    for key, (f, _, shape, _) in sorted(found.items()):
        want = tuple(expected[key].shape)
        if shape != want:
            raise CheckpointError(f"shape mismatch for '{key}' in {f.name}: config.json implies {want}, file has {shape}")

    target = runner.dtype
    bar = _Progress(len(files), progress if progress is not None else len(files) > 1)
    for f in files:
        try:
            arrays = mx.load(str(f))
        except Exception as exc:  # noqa: BLE001 - MLX raises several types for damaged files
            raise CheckpointError(f"{f.name} could not be read ({exc}); the file is damaged: re-download it") from None
        wanted = [(k, old) for k, (ff, old, _, _) in found.items() if ff == f]
        for key, old in wanted:
            a = arrays[old]
            if key in slices:  # only this rank's part is ever materialised
                from ..distributed.tensor_parallel import take

                a = take(a, slices[key])
            if mx.issubdtype(a.dtype, mx.floating) and a.dtype != target:
                a = a.astype(target)
            mx.eval(a)
            runner.model.update(tree_unflatten([(key, a)]), strict=False)
        del arrays
        bar.update(f.name)
    if merge:
        runner.merge_projections()
    if tokenizer:
        runner.tokenizer = load_tokenizer(directory)
    return runner


def load_tokenizer(directory: Path):
    if not (directory / "tokenizer.json").exists():
        return None
    from ..generation.tokenizer import TokenizerWrapper

    return TokenizerWrapper.from_dir(directory)
