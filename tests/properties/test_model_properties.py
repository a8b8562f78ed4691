"""Model properties for random architectures drawn by a hypothesis strategy."""
from hypothesis import given, settings
from hypothesis import strategies as st

from budget import examples
from xlstm_metal import build_graph, xLSTMRunner
from xlstm_metal.testing import check_chunkwise_matches_step, check_padding_invariance, check_state_passing
from xlstm_metal.testing.checks import VerifyReport
from xlstm_metal.testing.strategies import wiring_specs


def assert_all(results):
    report = VerifyReport("drawn", results)
    assert report.passed, str(report)


@settings(max_examples=examples(10, 300))
@given(spec=wiring_specs(), seed=st.integers(0, 1000), seq_len=st.integers(2, 30))
def test_full_forward_equals_token_by_token_decoding(spec, seed, seq_len):
    runner = xLSTMRunner.from_spec(spec, seed=seed)
    assert runner.graph.lint() == []
    assert_all(check_chunkwise_matches_step(runner, batch=2, seq_len=seq_len, chunk_sizes=(1, 7), seed=seed))


@settings(max_examples=examples(10, 300))
@given(spec=wiring_specs(), seed=st.integers(0, 1000), seq_len=st.integers(3, 40), data=st.data())
def test_segmented_prefill_equals_single_prefill(spec, seed, seq_len, data):
    cut = data.draw(st.integers(1, seq_len - 1), label="cut")
    runner = xLSTMRunner.from_spec(spec, seed=seed)
    assert_all(check_state_passing(runner, seq_len=seq_len, splits=(cut,), seed=seed))
    assert_all(check_padding_invariance(runner, lengths=(1 + seed % 5, 6), seed=seed))


@given(spec=wiring_specs())
def test_drawn_specs_build(spec):
    g = build_graph(spec, materialize=False)
    assert g.outputs == ["lm_head"]
