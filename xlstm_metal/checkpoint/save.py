"""Writing a loadable checkpoint directory (convert, quantize, training checkpoints), atomically.

Everything is written into a hidden temporary directory next to the destination and swapped
into place at the end (``xlstm_metal.files``), under the destination's writer lock: a failed or
interrupted write leaves the previous version (or none), never a half-written one.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import mlx.core as mx
import yaml
from mlx.utils import tree_flatten

from ..files import recover_dir, write_dir, writer_lock
from ..modules import GraphModule, as_dtype, cast_parameters, dequantize_model, dtype_name, quantize_model
from .config import is_large_config
from .files import CheckpointError
from .load import SPEC_FILE, consistently, open_checkpoint
from .sanitize import official_keys, to_official

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
                   "chat_template.jinja")


def _shards(weights: dict[str, mx.array], max_bytes: int) -> list[dict[str, mx.array]]:
    shards, current, size = [], {}, 0
    for k, v in weights.items():
        if current and size + v.nbytes > max_bytes:
            shards.append(current)
            current, size = {}, 0
        current[k] = v
        size += v.nbytes
    if current:
        shards.append(current)
    return shards


def save_pretrained(out_dir: str | Path, model, graph, *, dtype: mx.Dtype, config: Any,
                    quantization: dict | None = None, tokenizer_dir: str | Path | None = None,
                    max_shard_bytes: int = 5 * 1024**3, overwrite: bool = False, extra=None) -> Path:
    """Write ``model``'s weights under the official names, config.json (``config``: an ``xLSTMConfig`` or a
    dict; None: the graph's name) and the wiring spec when it is not an xLSTMLarge config.

    ``extra(tmp_dir)`` may add files (e.g. a trainer's state) before the directory is swapped in.
    With ``overwrite`` an existing directory is replaced only once the new one is complete.
    """
    out = Path(out_dir)
    if any(key.endswith(".lora_a") for key, _ in tree_flatten(model.parameters())):
        raise CheckpointError(f"the model carries unfused LoRA adapters, which {out} could not hold as a checkpoint: "
                              "merge them first (xlstm_metal.train.fuse_lora) or save them alone (save_adapters)")
    with writer_lock(out):
        recover_dir(out)
        if out.exists() and not out.is_dir():
            raise CheckpointError(f"{out} exists and is not a directory; choose another path")
        if out.exists() and any(out.iterdir()) and not overwrite:
            raise CheckpointError(f"{out} exists and is not empty; choose a new directory (or replace it: "
                                  "--overwrite on the command line, overwrite=True in Python)")
        def fill(tmp: Path) -> None:
            _write(tmp, model, graph, dtype, config, quantization, tokenizer_dir, max_shard_bytes)
            if extra is not None:
                extra(tmp)

        write_dir(out, fill)
    return out


def _write(tmp: Path, model, graph, dtype, config, quantization, tokenizer_dir, max_shard_bytes) -> None:
    """Fill the new directory: weights (sharded past ``max_shard_bytes``), config.json, spec, tokenizer files."""
    weights = to_official(official_keys(graph), dict(tree_flatten(model.parameters())))
    shards = _shards(weights, max_shard_bytes)
    if len(shards) == 1:
        mx.save_safetensors(str(tmp / "model.safetensors"), shards[0], metadata={"format": "mlx"})
    else:
        weight_map = {}
        for n, shard in enumerate(shards, 1):
            name = f"model-{n:05d}-of-{len(shards):05d}.safetensors"
            mx.save_safetensors(str(tmp / name), shard, metadata={"format": "mlx"})
            weight_map.update({k: name for k in shard})
        total = sum(v.nbytes for v in weights.values())
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (tmp / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    default = {"model_type": "xlstm_metal", "name": graph.name}
    cfg = config.to_dict() if hasattr(config, "to_dict") else dict(config or default)
    cfg["torch_dtype"] = dtype_name(dtype)
    if "dtype" in cfg:  # transformers >= 5's name for it: both must say the same
        cfg["dtype"] = cfg["torch_dtype"]
    if quantization:
        cfg["quantization"] = quantization
    else:
        cfg.pop("quantization", None)
    (tmp / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True))
    if not is_large_config(cfg):
        (tmp / SPEC_FILE).write_text(yaml.safe_dump(graph.spec.source.data, sort_keys=False))
    if tokenizer_dir is not None:
        for name in TOKENIZER_FILES:
            if (Path(tokenizer_dir) / name).exists():
                shutil.copy2(Path(tokenizer_dir) / name, tmp / name)


def convert(src: str | Path, dst: str | Path, *, dtype: str | None = None, q_bits: int | None = None,
            q_group_size: int = 64, overwrite: bool = False, dequantize: bool = False) -> Path:
    """Re-save a checkpoint in another dtype and/or quantised with MLX's affine quantisation (or, with
    ``dequantize``, a quantized one in full precision)."""
    def read():
        ckpt = open_checkpoint(src)
        if q_bits and ckpt.quantization:
            raise CheckpointError(f"{src} is already quantized ({ckpt.quantization}); "
                                  "convert from the full-precision checkpoint")
        target = as_dtype(dtype or ckpt.dtype)
        model = GraphModule(ckpt.graph)
        cast_parameters(model, target)
        if ckpt.quantization:
            quantize_model(model, ckpt.quantization)
        ckpt.read(model, ckpt.index(model), dtype=target, progress=False)
        return ckpt, model, target

    ckpt, model, target = consistently(src, read)  # one version of src, even while it is being rewritten
    q = ckpt.quantization
    if dequantize and q:
        dequantize_model(model)
        q = None
    if q_bits:
        q = {"group_size": int(q_group_size), "bits": int(q_bits), "mode": "affine"}
        quantize_model(model, q)
    mx.eval(model.parameters())
    return save_pretrained(dst, model, ckpt.graph, dtype=target, config=ckpt.config, quantization=q, tokenizer_dir=ckpt.directory,
                           overwrite=overwrite)
