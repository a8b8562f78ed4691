"""Writing a loadable directory from an official ``xlstm.xLSTMLMModel`` PyTorch checkpoint: config.json (the
``xLSTMLMModelConfig`` dict) and model.safetensors (the state_dict keys), checked key by key and shape by shape
against the model the config describes before it is moved into place. Needs torch (the ``reference`` extra)."""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import mlx.core as mx
import numpy as np
import yaml

from ..graph import build_graph
from ..modules import GraphModule
from ..spec import SpecError
from .config import ConfigError
from .files import CheckpointError
from .load import open_checkpoint
from .official_lm import is_official_lm_config, official_lm_spec


def read_official_config(path: Path) -> dict:
    """An ``xLSTMLMModelConfig`` as a dict from a JSON or YAML file (e.g. ``dataclasses.asdict`` dumped)."""
    try:
        raw = yaml.safe_load(path.read_text())  # JSON is YAML
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read ({exc})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: is neither JSON nor YAML ({str(exc).splitlines()[0]})") from None
    if isinstance(raw, dict) and isinstance(raw.get("model"), dict) and not is_official_lm_config(raw):
        raw = raw["model"]  # an experiment config with the model's under ``model``
    if not is_official_lm_config(raw):
        raise ConfigError(f"{path}: not an xLSTMLMModelConfig (needs vocab_size and mlstm_block and/or slstm_block)")
    return raw


def read_state_dict(path: Path) -> dict[str, mx.array]:
    """The tensors of a ``torch.save``d state_dict (or of its ``state_dict`` / ``model`` entry), as MLX arrays."""
    try:
        import torch
    except ImportError:
        raise CheckpointError("reading a PyTorch checkpoint needs torch: pip install 'xlstm-metal[reference]'") from None
    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for unreadable or unsafe files
        raise CheckpointError(f"{path}: not a loadable PyTorch state_dict ({str(exc).splitlines()[0]})") from None
    for key in ("state_dict", "model"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
    if not isinstance(data, dict) or not data:
        raise CheckpointError(f"{path}: holds no state_dict (a mapping of parameter names to tensors)")
    out = {}
    for name, t in data.items():
        if not isinstance(t, torch.Tensor):
            raise CheckpointError(f"{path}: entry '{name}' is a {type(t).__name__}, not a tensor")
        if t.dtype == torch.bfloat16:
            out[name] = mx.array(t.float().numpy()).astype(mx.bfloat16)
        else:
            out[name] = mx.array(np.ascontiguousarray(t.detach().numpy()))
    return out


def import_official(config_path: str | Path, state_dict_path: str | Path, out_dir: str | Path, *,
                    overwrite: bool = False) -> Path:
    """Write ``out_dir`` (config.json + model.safetensors) from an official config and state_dict; an existing
    non-empty ``out_dir`` is replaced only with ``overwrite`` and only once the new one is complete and checked."""
    config_path, out = Path(config_path), Path(out_dir)
    raw = read_official_config(config_path)
    try:
        graph = build_graph(official_lm_spec(raw, out.name, str(config_path)))
    except SpecError as exc:
        raise ConfigError(f"{config_path}: describes an architecture that does not build: {exc}") from None
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise CheckpointError(f"{out} exists and is not empty; choose a new directory (or pass --overwrite)")
    weights = read_state_dict(Path(state_dict_path))
    dtypes = {str(a.dtype) for a in weights.values() if mx.issubdtype(a.dtype, mx.floating)}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        mx.save_safetensors(str(tmp / "model.safetensors"), weights, metadata={"format": "pt"})
        cfg = dict(raw, torch_dtype="bfloat16" if dtypes == {"mlx.core.bfloat16"} else "float32")
        (tmp / "config.json").write_text(json.dumps(cfg, indent=2))
        ckpt = open_checkpoint(tmp)
        try:
            ckpt.index(GraphModule(graph))  # every key present, none unknown, every shape right
        except CheckpointError as exc:
            raise CheckpointError(str(exc).replace(str(tmp), str(state_dict_path))) from None
        if out.exists():
            old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
            out.rename(old / "dir")
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
