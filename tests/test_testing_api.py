"""xlstm_metal.testing is a public API: its checks pass on good models and catch broken ones."""
import pytest

from xlstm_metal import xLSTMRunner
from xlstm_metal.cli import main
from xlstm_metal.testing import assert_chunkwise_matches_step, assert_padding_invariance, assert_state_passing, verify


def test_checks_pass_on_the_shipped_architectures():
    for spec in ("xlstm_tiny", "xlstm_parallel_heads"):
        report = verify(spec, seeds=(0,))
        assert report.passed, str(report)
        assert len(report.results) == 9


def forgetful_step_kernel():
    """A kernel bug simulated: the step kernel drops the carried state on every token."""
    import dataclasses

    from xlstm_metal.kernels import get_kernel

    step = get_kernel("mlstm", "native_step")
    return dataclasses.replace(step, fn=lambda q, k, v, i, f, state=None, **kw: step.fn(q, k, v, i, f, None, **kw))


def test_a_broken_decode_kernel_is_caught_with_a_readable_table():
    runner = xLSTMRunner.from_spec("xlstm_tiny", seed=0)
    plan = runner.plan(1)
    broken = forgetful_step_kernel()
    for i, s in enumerate(plan.steps):
        if s.kernel is not None:
            plan.steps[i] = type(s)(s.node, s.type, s.inputs, s.out_type, broken, s.chunk_size, "test: broken")
    runner.compile = False
    with pytest.raises(AssertionError) as info:
        assert_chunkwise_matches_step(runner, chunk_sizes=(4,))
    text = str(info.value)
    assert "FAIL" in text and "chunkwise L=4 == step" in text and "worst rel" in text


def test_padding_check_catches_a_model_that_ignores_the_mask():
    runner = xLSTMRunner.from_spec("xlstm_tiny", seed=0)
    original = runner.run

    def run_ignoring_mask(tokens, state=None, *, mask=None, last_only=False):
        return original(tokens, state, mask=None, last_only=last_only)

    runner.run = run_ignoring_mask
    with pytest.raises(AssertionError, match="left-padded batch == each row alone"):
        assert_padding_invariance(runner)
    assert_state_passing(runner)  # unaffected by the mask


def test_verify_cli_prints_a_table_and_sets_the_exit_code(capsys):
    assert main(["verify", "xlstm_tiny", "--seeds", "0", "--chunk-sizes", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("verify xlstm-tiny: PASSED (6/6 checks)")
    assert "chunkwise L=3 == step" in out and "sequence == step" in out
