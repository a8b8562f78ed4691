"""``"gate_soft_cap": null`` / ``"output_logit_soft_cap": null`` mean no cap, as in the official xLSTMLarge."""
import numpy as np
import pytest

from official import build, forward
from xlstm_metal import xLSTMRunner

pytestmark = pytest.mark.reference


@pytest.mark.parametrize("caps", [dict(gate_soft_cap=None, output_logit_soft_cap=None),
                                  dict(gate_soft_cap=None), dict(output_logit_soft_cap=None)])
def test_null_caps_match_the_official_uncapped_model(tmp_path, caps):
    official = build(tmp_path, seed=3, **caps)
    ours = xLSTMRunner.from_pretrained(tmp_path)
    tokens = np.random.default_rng(0).integers(0, 101, size=(2, 29))
    ref, _ = forward(official, tokens)
    got, _ = ours(tokens)
    got = np.array(got)
    assert np.abs(got - ref).max() / max(1.0, np.abs(ref).max()) <= 1e-4
