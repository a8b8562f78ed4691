"""Checkpoints written by Hugging Face transformers' ``xLSTMForCausalLM.save_pretrained`` load and
compute what transformers computes (float32, <= 1e-4 relative to the largest logit).

transformers' layout differs from the official package's in the final norm: its ``out_norm`` never
has a bias (also with ``use_bias=True``) and exists, and is applied, also with ``add_out_norm=False``.
"""
import json

import numpy as np
import pytest

pytest.importorskip("transformers", reason="transformers parity needs the `reference` extra")
from transformers_xlstm import IMPLEMENTATIONS, build, logits  # noqa: E402

from xlstm_metal import xLSTMRunner  # noqa: E402

pytestmark = pytest.mark.reference

CONFIGS = {
    "default": dict(),
    "use-bias": dict(use_bias=True, hidden_size=40, num_heads=5, qk_dim_factor=1.0, v_dim_factor=0.5),
    "no-out-norm": dict(add_out_norm=False, num_heads=2, hidden_size=24),
    "bias-no-out-norm": dict(use_bias=True, add_out_norm=False),
}


@pytest.mark.parametrize("implementation", list(IMPLEMENTATIONS))
@pytest.mark.parametrize("name", list(CONFIGS))
def test_transformers_checkpoints_match_transformers_logits(tmp_path, name, implementation):
    """transformers uses the official package's blocks when it is installed, else its own copy of them."""
    model = build(tmp_path, seed=len(name), implementation=implementation, **CONFIGS[name])
    ours = xLSTMRunner.from_pretrained(tmp_path)
    tokens = np.random.default_rng(0).integers(0, 101, size=(2, 23))
    ref = logits(model, tokens)
    got = np.array(ours(tokens)[0])
    assert np.abs(got - ref).max() / max(1.0, np.abs(ref).max()) <= 1e-4


@pytest.mark.parametrize("implementation", list(IMPLEMENTATIONS))
def test_transformers_writes_the_layout_this_test_is_about(tmp_path, implementation):
    build(tmp_path, implementation=implementation, use_bias=True, add_out_norm=False)
    from safetensors import safe_open

    with safe_open(str(tmp_path / "model.safetensors"), "np") as f:
        keys = set(f.keys())
    assert "backbone.out_norm.weight" in keys and "backbone.out_norm.bias" not in keys
    assert "transformers_version" in json.loads((tmp_path / "config.json").read_text())
