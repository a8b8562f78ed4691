"""Build random official ``xLSTMLarge`` models (PyTorch, float32) and save them in the Hugging Face layout.

Torch is imported here only: the package itself never imports it.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from xlstm.xlstm_large.model import xLSTMLarge, xLSTMLargeConfig

CPU_KERNELS = dict(chunkwise_kernel="chunkwise--native_autograd", sequence_kernel="native_sequence__native", step_kernel="native")
# config.json fields as the Hugging Face checkpoint names them (transformers' xLSTMConfig)
HF_FIELDS = ("embedding_dim", "num_heads", "num_blocks", "vocab_size", "use_bias", "norm_eps", "norm_reduction_force_float32",
             "add_out_norm", "qk_dim_factor", "v_dim_factor", "chunk_size", "eps", "ffn_proj_factor",
             "ffn_round_up_to_multiple_of", "gate_soft_cap", "output_logit_soft_cap", "weight_mode")


def build(directory: Path, *, seed: int = 0, **overrides) -> xLSTMLarge:
    params = dict(embedding_dim=48, num_heads=3, num_blocks=2, vocab_size=101, chunk_size=16, weight_mode="single",
                  ffn_proj_factor=2.6667, ffn_round_up_to_multiple_of=16, use_bias=False)
    params.update(overrides)
    cfg = xLSTMLargeConfig(**params, mode="inference", return_last_states=True, autocast_kernel_dtype="float32", **CPU_KERNELS)
    torch.manual_seed(seed)
    model = xLSTMLarge(cfg).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # every parameter random, so that nothing passes by accident
        for name, p in model.named_parameters():
            if name.endswith("norm_mlstm.weight") or name.endswith("norm_ffn.weight") or "norm.weight" in name:
                p.copy_(1 + 0.3 * torch.randn(p.shape, generator=gen))
            elif "gate_preact.bias" in name:
                p.copy_(2.0 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * (0.5 / p.shape[-1] ** 0.5 if p.ndim == 2 else 0.1))
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = {("backbone.embeddings.weight" if k == "embedding.weight" else k): v.contiguous() for k, v in model.state_dict().items()}
    save_file(weights, str(directory / "model.safetensors"))
    config = {k: getattr(cfg, k) for k in HF_FIELDS}
    config.update(model_type="xlstm", architectures=["xLSTMForCausalLM"], torch_dtype="float32", bos_token_id=0,
                  eos_token_id=2, pad_token_id=1, tie_word_embeddings=False, mode="inference")
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    return model


def forward(model: xLSTMLarge, tokens: np.ndarray, state=None):
    """Logits (numpy) and the official state dict {block: (C, n, m)} for int tokens [B, S]."""
    with torch.no_grad():
        logits, state = model(torch.as_tensor(np.asarray(tokens), dtype=torch.long), state)
    return logits.float().numpy(), state


def state_arrays(state) -> list[np.ndarray]:
    """The official state as a flat list in our order (C, n, m per block; m squeezed to [B, NH])."""
    out = []
    for block in sorted(state):
        C, n, m = state[block]
        out += [C.float().numpy(), n.float().numpy(), m.float().numpy().reshape(m.shape[0], m.shape[1])]
    return out


def clone_state(state):
    return {k: tuple(t.clone() for t in v) for k, v in state.items()}
