"""Build random xLSTM models with Hugging Face transformers (PyTorch, float32) and save them with its
own ``save_pretrained``: the layout a transformers user's checkpoint has. Nothing is downloaded.

The ``reference`` extra pins transformers 4.57.1: from 5.0 it requires the ``kernels`` distribution, whose
setuptools plugin (``kernels._internals``) resolves to this repository's ``kernels/`` folder and breaks
``pip install -e .``. transformers 4.x's own copy of the blocks fails on its own (a TypeError inside it), so that
variant runs only under transformers >= 5 (``pip install -U transformers && pip uninstall kernels``)."""
from __future__ import annotations

import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest
import torch

from official import CPU_KERNELS

ROOT = Path(__file__).resolve().parents[2]


def _import_without_the_repository_root():
    """transformers looks for (and, when found, imports) a top-level ``kernels`` package; under ``python -m pytest``
    the repository root is on sys.path and its ``kernels/`` folder (our package's source) would be taken for it."""
    saved = sys.path[:]
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT]
    try:
        import transformers.integrations.hub_kernels  # noqa: F401  (binds `kernels` to the distribution)
        from transformers import xLSTMConfig, xLSTMForCausalLM
    finally:
        sys.path[:] = saved
    return xLSTMConfig, xLSTMForCausalLM


xLSTMConfig, xLSTMForCausalLM = _import_without_the_repository_root()


def _own_implementation():
    """transformers' modeling_xlstm as it is without the official ``xlstm`` package installed (then it uses its
    own copy of the blocks): the module executed once more with ``is_xlstm_available`` answering False."""
    import importlib.util

    import transformers.utils as utils

    found, spec = utils.is_xlstm_available, importlib.util.find_spec("transformers.models.xlstm.modeling_xlstm")
    module = importlib.util.module_from_spec(spec)
    utils.is_xlstm_available = lambda *a, **k: False
    try:
        spec.loader.exec_module(module)
    finally:
        utils.is_xlstm_available = found
    assert not module.external_xlstm
    return module.xLSTMForCausalLM


IMPLEMENTATIONS = {"with-official-blocks": xLSTMForCausalLM, "own-blocks": _own_implementation()}


def build(directory: Path, *, seed: int = 0, implementation: str = "with-official-blocks", **overrides):
    params = dict(hidden_size=48, num_heads=3, num_blocks=2, vocab_size=101, chunk_size=16, use_bias=False,
                  ffn_proj_factor=2.6667, ffn_round_up_to_multiple_of=16, autocast_kernel_dtype="float32",
                  mode="inference", max_inference_chunksize=16384)
    params.update(overrides)
    if implementation == "own-blocks" and int(version("transformers").split(".")[0]) < 5:
        pytest.skip("transformers 4.x's own copy of the xLSTM blocks fails in transformers itself")
    torch.manual_seed(seed)
    model = IMPLEMENTATIONS[implementation](xLSTMConfig(**params, **CPU_KERNELS)).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # every parameter random (norm weights near 1, biases too), so nothing passes by accident
        for name, p in model.named_parameters():
            if p.ndim == 1 and "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.3 * torch.randn(p.shape, generator=gen))
            elif "gate_preact.bias" in name:
                p.copy_(2.0 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * (0.5 / p.shape[-1] ** 0.5 if p.ndim == 2 else 0.1))
    model.save_pretrained(directory)
    return model


def logits(model, tokens: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.as_tensor(np.asarray(tokens), dtype=torch.long), use_cache=False).logits.float().numpy()
