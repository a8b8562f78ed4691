"""How to prove your own YAML architecture's prefill and decode paths agree — three lines of pytest.

    pytest examples/test_my_architecture.py        (or: xlstm-metal verify wiring_specs/xlstm_parallel_heads.yaml)
"""
from pathlib import Path

from xlstm_metal.testing import assert_chunkwise_matches_step, assert_padding_invariance, assert_state_passing

SPEC = str(Path(__file__).resolve().parent.parent / "wiring_specs" / "xlstm_parallel_heads.yaml")


def test_prefill_equals_decode():
    assert_chunkwise_matches_step(SPEC)


def test_prompt_can_be_split_anywhere():
    assert_state_passing(SPEC)


def test_padding_does_not_leak_into_state():
    assert_padding_invariance(SPEC)


if __name__ == "__main__":  # runnable as a script too
    for test in (test_prefill_equals_decode, test_prompt_can_be_split_anywhere, test_padding_does_not_leak_into_state):
        test()
        print(f"{test.__name__}: ok")
