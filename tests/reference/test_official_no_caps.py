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
    ref, ref_state = forward(official, tokens)
    got, state = ours(tokens)
    assert rel(got, ref) <= 1e-4
    step = np.array([[7], [11]])  # one decoding step on the prefilled state (the step kernel's gates)
    ref, _ = forward(official, step, ref_state)
    got, _ = ours(step, state)
    assert rel(got, ref) <= 1e-4


def rel(a, b):
    a, b = np.array(a), np.asarray(b)
    return float(np.abs(a - b).max()) / max(1.0, float(np.abs(b).max()))
