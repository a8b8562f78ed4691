"""Build random official ``xLSTMLMModel`` models (the xLSTM paper's architecture; PyTorch, float32, sLSTM on
the "vanilla" CPU backend) and save them as a directory: config.json (``dataclasses.asdict`` of the
config) and model.safetensors (the state_dict keys)."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from xlstm import (FeedForwardConfig, mLSTMBlockConfig, mLSTMLayerConfig, sLSTMBlockConfig, sLSTMLayerConfig,
                   xLSTMLMModel, xLSTMLMModelConfig)


def config(num_blocks: int, slstm_at, *, dim: int = 64, vocab: int = 97, context: int = 64, mlstm: bool = True,
           tie: bool = False, post_norm: bool = True, slstm_conv: int = 4, ffn: bool = True, bias: bool = False,
           mlstm_layer: dict | None = None, slstm_heads: int = 4, ffn_config: dict | None = None) -> xLSTMLMModelConfig:
    m = {"conv1d_kernel_size": 4, "qkv_proj_blocksize": 4, "num_heads": 4, **(mlstm_layer or {})}
    mblock = mLSTMBlockConfig(mlstm=mLSTMLayerConfig(**m))
    f = {"proj_factor": 1.3, "act_fn": "gelu", **(ffn_config or {})}
    sblock = sLSTMBlockConfig(slstm=sLSTMLayerConfig(backend="vanilla", num_heads=slstm_heads,
                                                     conv1d_kernel_size=slstm_conv,
                                                     bias_init="powerlaw_blockdependent"),
                              feedforward=FeedForwardConfig(**f) if ffn else None)
    return xLSTMLMModelConfig(mlstm_block=mblock if mlstm else None, slstm_block=sblock, context_length=context,
                              num_blocks=num_blocks, embedding_dim=dim, slstm_at=slstm_at, vocab_size=vocab,
                              tie_weights=tie, add_post_blocks_norm=post_norm, bias=bias)


def build(cfg: xLSTMLMModelConfig, *, seed: int = 0, igate_bias: float = 0.0) -> xLSTMLMModel:
    """The official model with every parameter random (so that nothing passes by accident); ``igate_bias``
    shifts the mLSTM input gates (far below 0, the normaliser's exp(-m) term decides the outputs)."""
    torch.manual_seed(seed)
    model = xLSTMLMModel(cfg)
    model.reset_parameters()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:  # stored as 1 + weight
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))
            elif name.endswith("fgate.bias") and "mlstm_cell" in name:
                p.copy_(3.0 + 2.0 * torch.randn(p.shape, generator=gen))
            elif name.endswith(("igate.bias", "_bias_", "learnable_skip")) or "conv" in name:
                p.add_(0.5 * torch.randn(p.shape, generator=gen) + (igate_bias if "mlstm_cell.igate" in name else 0))
            elif "_recurrent_kernel_" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5 / p.shape[-1] ** 0.5)
            elif name.endswith("bias") and p.ndim == 1:  # projection biases (zeros at init)
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            elif p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=gen) * (0.8 / p.shape[-1] ** 0.5))
    return model.eval()


def save(model: xLSTMLMModel, directory: Path) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(directory / "model.safetensors"))
    (directory / "config.json").write_text(json.dumps(asdict(model.config), indent=2))
    return directory


def logits(model: xLSTMLMModel, tokens: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(np.asarray(tokens, np.int64))).numpy()
