"""LoRA adapters on disk, as mlx-lm writes them: ``adapters.safetensors`` (only the adapter weights) and
``adapter_config.json`` (the base model and the LoRA options), written atomically; loaded onto a base model for
generation, or merged into its weights (``convert --fuse-adapters``)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import mlx.core as mx
from mlx.utils import tree_flatten, tree_unflatten

from ..checkpoint.files import CheckpointError
from ..errors import shown
from ..files import read_json, recover_dir, write_dir, writer_lock
from ..tensorfile import read_header
from .lora import LoRAConfig, LoRAError, apply_lora, fuse_lora

ADAPTER_WEIGHTS = "adapters.safetensors"
ADAPTER_CONFIG = "adapter_config.json"


class AdapterError(CheckpointError):
    """An adapter directory that is damaged or does not fit the base model (the message names the file)."""


def adapter_config(cfg: LoRAConfig, base: str | None) -> dict:
    """The adapter_config.json of a run (mlx-lm's field names)."""
    return {"fine_tune_type": "lora", "model": base, "num_layers": cfg.num_layers,
            "lora_parameters": {"rank": cfg.rank, "scale": cfg.scale, "dropout": cfg.dropout, "keys": cfg.keys}}


def read_adapter_config(directory: str | Path) -> tuple[LoRAConfig, str | None]:
    """(the LoRA options, the base model it was trained on) of an adapter directory."""
    path = Path(directory) / ADAPTER_CONFIG
    if not path.is_file():
        raise AdapterError(f"{directory} has no {ADAPTER_CONFIG}; an adapter directory holds {ADAPTER_CONFIG} and "
                           f"{ADAPTER_WEIGHTS} (as `xlstm-metal train --lora-rank` writes them)")
    raw = read_json(path, AdapterError)
    params = raw.get("lora_parameters") if isinstance(raw, dict) else None
    if not isinstance(params, dict):
        raise AdapterError(f"{path} field 'lora_parameters' must be an object with rank, scale, dropout and keys")
    if raw.get("fine_tune_type", "lora") != "lora":
        raise AdapterError(f"{path} field 'fine_tune_type' = {raw['fine_tune_type']!r}: only 'lora' adapters load")
    keys = params.get("keys")
    if keys is not None and not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)):
        raise AdapterError(f"{path} field 'lora_parameters.keys' must be a list of projection names or null")
    try:
        cfg = LoRAConfig(rank=params.get("rank", 8), scale=params.get("scale", 20.0),
                         dropout=params.get("dropout", 0.0), num_layers=raw.get("num_layers", 16), keys=keys)
    except LoRAError as exc:
        raise AdapterError(f"{path}: {exc}") from None
    base = raw.get("model")
    return cfg, base if isinstance(base, str) else None


def adapter_weights(model) -> dict[str, mx.array]:
    """The adapter weights of ``model`` (its trainable parameters once ``apply_lora`` froze the rest)."""
    return dict(tree_flatten(model.trainable_parameters()))


def save_adapters(out: str | Path, model, cfg: LoRAConfig, base: str | None,
                  extra: Callable[[Path], None] | None = None) -> Path:
    """Write the adapter directory ``out`` atomically (its previous version stays until the new one is complete);
    ``extra(tmp)`` may add files (a trainer's state)."""
    out = Path(out)
    with writer_lock(out):
        recover_dir(out)
        def fill(tmp: Path) -> None:
            mx.save_safetensors(str(tmp / ADAPTER_WEIGHTS), adapter_weights(model), metadata={"format": "mlx"})
            (tmp / ADAPTER_CONFIG).write_text(json.dumps(adapter_config(cfg, base), indent=2))
            if extra is not None:
                extra(tmp)

        write_dir(out, fill)
    return out


def read_adapter_weights(directory: str | Path, model) -> None:
    """Load ``adapters.safetensors`` into ``model`` (adapted as its config says): every adapter present, none
    unknown, every shape right, or one ``AdapterError`` naming them."""
    path = Path(directory) / ADAPTER_WEIGHTS
    if not path.is_file():
        raise AdapterError(f"{directory} has no {ADAPTER_WEIGHTS}")
    header = read_header(path, AdapterError)
    want = adapter_weights(model)
    have = {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}
    missing, unknown = sorted(set(want) - set(have)), sorted(set(have) - set(want))
    if missing or unknown:
        what = "; ".join(f"{kind} ({len(ks)}): {', '.join(map(shown, ks[:5]))}{' ...' if len(ks) > 5 else ''}"
                         for kind, ks in (("missing", missing), ("unknown", unknown)) if ks)
        raise AdapterError(f"{path} does not fit this base model and {ADAPTER_CONFIG}: {what}")
    for key, array in want.items():
        if have[key] != tuple(array.shape):
            raise AdapterError(f"{path} tensor '{shown(key)}' has shape {have[key]}, the base model needs "
                               f"{tuple(array.shape)}")
    loaded = mx.load(str(path))
    model.update(tree_unflatten([(k, loaded[k].astype(mx.float32)) for k in want]), strict=False)


def load_adapters(runner, directory: str | Path, *, dropout: float | None = 0.0) -> LoRAConfig:
    """Put the adapters of ``directory`` on ``runner``'s model, unfused (``dropout``: None keeps the trained one;
    0 for generation)."""
    cfg, _ = read_adapter_config(directory)
    if dropout is not None:
        cfg.dropout = dropout
    try:
        apply_lora(runner.model, runner.graph, cfg)
    except LoRAError as exc:
        raise AdapterError(f"{Path(directory) / ADAPTER_CONFIG} does not fit the model '{runner.graph.name}': "
                           f"{exc}") from None
    read_adapter_weights(directory, runner.model)
    if hasattr(runner, "_decode_fn"):
        runner._decode_fn = {}  # the compiled decode step was traced without the adapters
    mx.eval(runner.model.parameters())
    return cfg


def fuse_adapters(src: str | Path, adapters: str | Path, dst: str | Path, *, dequantize: bool = False,
                  overwrite: bool = False) -> Path:
    """``src`` with the adapters of ``adapters`` merged into its weights, written to ``dst`` as a normal
    checkpoint: re-quantized as ``src`` was, or in full precision with ``dequantize``."""
    from ..modules import dequantize_model
    from ..runner import xLSTMRunner

    runner = xLSTMRunner.from_pretrained(src, tokenizer=False, progress=False)
    load_adapters(runner, adapters)
    fuse_lora(runner.model, dequantize)
    if dequantize:
        dequantize_model(runner.model)
        runner.quantization = None
    mx.eval(runner.model.parameters())
    from ..checkpoint import open_checkpoint

    return runner.save_pretrained(dst, tokenizer_dir=open_checkpoint(src).directory, overwrite=overwrite)
