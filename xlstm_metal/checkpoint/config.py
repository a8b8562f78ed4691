"""A checkpoint's ``config.json`` → ``xLSTMConfig`` → wiring spec.

``from_dict`` ignores keys it does not know (a Hugging Face config carries many that do not
change the architecture) but rejects values we cannot run, saying which field and why.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError

# transformers' xLSTMConfig accepts these aliases next to the official names.
_ALIASES = {"hidden_size": "embedding_dim", "num_hidden_layers": "num_blocks"}
REQUIRED = ("embedding_dim", "num_heads", "num_blocks", "vocab_size")
NULLABLE = ("gate_soft_cap", "output_logit_soft_cap")  # null means "no cap" (official xLSTMLargeConfig)


class ConfigError(InputError):
    """config.json asks for something this implementation cannot run."""


@dataclass
class xLSTMConfig:
    embedding_dim: int
    num_heads: int
    num_blocks: int
    vocab_size: int
    use_bias: bool = False
    norm_eps: float = 1e-6
    norm_reduction_force_float32: bool = True
    add_out_norm: bool = True
    qk_dim_factor: float = 0.5
    v_dim_factor: float = 1.0
    chunk_size: int = 64
    eps: float = 1e-6
    ffn_proj_factor: float = 2.6667
    ffn_round_up_to_multiple_of: int = 64
    gate_soft_cap: float | None = 15.0
    output_logit_soft_cap: float | None = 30.0
    weight_mode: str = "single"
    tie_word_embeddings: bool = False
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None
    quantization: dict | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)  # everything else, kept for writing back

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "xLSTMConfig":
        data = dict(raw)
        for alias, name in _ALIASES.items():
            if alias in data and data.get(name) is None:
                data[name] = data[alias]
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        missing = [n for n in REQUIRED if data.get(n) is None]
        if missing:
            raise ConfigError(f"config.json lacks required field(s): {', '.join(missing)}")
        known = {k: v for k, v in data.items() if k in names and (v is not None or k in NULLABLE)}
        check_value_types({k: v for k, v in known.items() if v is not None})
        extra = {k: v for k, v in raw.items() if k not in names}
        cfg = cls(**known, extra=extra)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        def bad(fld, why):
            raise ConfigError(f"config.json field '{fld}' = {getattr(self, fld)!r}: {why}")

        for fld in REQUIRED + ("chunk_size", "ffn_round_up_to_multiple_of"):
            v = getattr(self, fld)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                bad(fld, "must be a positive integer")
        if self.weight_mode not in ("single", "fused"):
            bad("weight_mode", "supported values are 'single' and 'fused'")
        for fld in ("qk_dim_factor", "v_dim_factor"):
            dim = int(self.embedding_dim * getattr(self, fld))
            if dim < self.num_heads or dim % self.num_heads:
                bad(fld, f"gives a dimension of {dim}, which is not a positive multiple of num_heads={self.num_heads}")
        if self.gate_soft_cap is not None and self.gate_soft_cap <= 0:
            bad("gate_soft_cap", "must be positive")
        check_quantization(self.quantization)
        act = self.extra.get("hidden_act") or self.extra.get("act_fn")
        if act not in (None, "silu", "swish"):
            raise ConfigError(f"config.json field 'hidden_act' = {act!r}: only SiLU (SwiGLU) feed-forwards are "
                              "supported")

    def out_norm(self) -> tuple[bool, bool]:
        """(whether the backbone ends in an RMSNorm, whether it has a bias). transformers' xLSTMModel
        (its config.json carries ``transformers_version``) always has one and applies it, never with a bias."""
        if "transformers_version" in self.extra:
            return True, False
        return self.add_out_norm, self.use_bias

    def eos_ids(self) -> set[int]:
        ids = self.eos_token_id
        return set(ids) if isinstance(ids, list) else set() if ids is None else {int(ids)}

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.extra, **{f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"})
        if self.quantization is None:
            del out["quantization"]
        return out


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# what JSON value each annotated field type accepts, and how to say it
_VALUE_TYPES = {
    "int": (_is_int, "an integer"),
    "float": (lambda v: (_is_int(v) or isinstance(v, float)) and math.isfinite(v), "a finite number"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "dict": (lambda v: isinstance(v, dict), "an object"),
    "list[int]": (lambda v: isinstance(v, list) and all(_is_int(i) for i in v), "a list of integers"),
}


def check_value_types(values: dict[str, Any]) -> None:
    """Each known field's JSON value has its field's type (``"gate_soft_cap": "15"`` is refused, naming the
    field), so no string or list reaches arithmetic that would fail far from config.json."""
    types = {f.name: f.type for f in dataclasses.fields(xLSTMConfig)}
    for name, value in values.items():
        allowed = [t.strip() for t in str(types[name]).split("|") if t.strip() in _VALUE_TYPES]
        if allowed and not any(_VALUE_TYPES[t][0](value) for t in allowed):
            want = " or ".join(_VALUE_TYPES[t][1] for t in allowed)
            raise ConfigError(f"config.json field '{name}' = {value!r}: must be {want}")


def check_quantization(q: Any) -> None:
    """config.json's ``quantization``: None, or what ``mx.quantize`` accepts."""
    if q is not None and (not isinstance(q, dict) or q.get("bits") not in (2, 3, 4, 5, 6, 8)
                          or q.get("group_size") not in (16, 32, 64, 128) or not isinstance(q.get("mode", ""), str)):
        raise ConfigError(f"config.json field 'quantization' = {q!r}: expected {{'bits': 2|3|4|5|6|8, "
                          "'group_size': 16|32|64|128}}")


def is_large_config(raw: dict) -> bool:
    """Whether a config.json dict describes the xLSTMLarge architecture (official or alias names)."""
    return {_ALIASES.get(k, k) for k in raw} >= set(REQUIRED)


def config_to_spec(cfg: xLSTMConfig, name: str = "xlstm-checkpoint") -> dict[str, Any]:
    """The wiring spec (as a dict, the same shape as ``wiring_specs/xlstm_7b.yaml``) of a config."""
    common_norm = {"eps": "norm_eps", "use_bias": cfg.use_bias,
                   "force_float32_reductions": cfg.norm_reduction_force_float32}
    block = [
        {"name": "norm_mlstm", "type": "rms_norm", "inputs": ["x"], **common_norm},
        {"name": "mlstm_layer", "type": "mlstm", "inputs": ["norm_mlstm"], "num_heads": "num_heads",
         "qk_dim_factor": cfg.qk_dim_factor, "v_dim_factor": cfg.v_dim_factor, "gate_soft_cap": cfg.gate_soft_cap,
         "norm_eps": "norm_eps", "eps": cfg.eps, "use_bias": cfg.use_bias, "weight_mode": cfg.weight_mode,
         "norm_reduction_force_float32": cfg.norm_reduction_force_float32, "chunk_size": "chunk_size"},
        {"name": "res_mlstm", "type": "add", "inputs": ["x", "mlstm_layer"]},
        {"name": "norm_ffn", "type": "rms_norm", "inputs": ["res_mlstm"], **common_norm},
        {"name": "ffn", "type": "swiglu", "inputs": ["norm_ffn"], "proj_factor": cfg.ffn_proj_factor,
         "round_up_to": cfg.ffn_round_up_to_multiple_of, "use_bias": cfg.use_bias, "weight_mode": cfg.weight_mode},
        {"name": "out", "type": "add", "inputs": ["res_mlstm", "ffn"]},
    ]
    nodes: list[dict[str, Any]] = [
        {"name": "backbone.embeddings", "type": "embedding", "inputs": ["tokens"], "num_embeddings": "vocab_size",
         "dim": "embedding_dim"},
        {"repeat": "num_blocks", "name": "backbone.blocks.{i}", "inputs": {"x": "backbone.embeddings"},
         "output": "out", "nodes": block},
    ]
    last = "backbone.blocks"
    has_out_norm, out_norm_bias = cfg.out_norm()
    if has_out_norm:
        nodes.append({"name": "backbone.out_norm", "type": "rms_norm", "inputs": [last],
                      **dict(common_norm, use_bias=out_norm_bias)})
        last = "backbone.out_norm"
    nodes.append({"name": "lm_head", "type": "lm_head", "inputs": [last], "vocab_size": "vocab_size",
                  "soft_cap": cfg.output_logit_soft_cap})
    return {
        "name": name,
        "description": "generated from a checkpoint's config.json",
        "dims": {"embedding_dim": cfg.embedding_dim, "num_heads": cfg.num_heads, "num_blocks": cfg.num_blocks,
                 "vocab_size": cfg.vocab_size, "chunk_size": cfg.chunk_size, "norm_eps": cfg.norm_eps},
        "inputs": ["tokens"],
        "nodes": nodes,
        "outputs": ["lm_head"],
    }
