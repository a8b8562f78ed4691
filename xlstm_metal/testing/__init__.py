"""Property-based parity testing for your own architectures.

In your pytest suite::

    from xlstm_metal.testing import assert_chunkwise_matches_step, assert_state_passing

    def test_my_architecture():
        assert_chunkwise_matches_step("my_arch.yaml")
        assert_state_passing("my_arch.yaml")

Hypothesis strategies (``wiring_specs``, ``mlstm_inputs``, ``invalid_specs``, ``chunk_sizes``)
live in ``xlstm_metal.testing.strategies`` and need the ``test`` extra (hypothesis).
"""
from .checks import (CheckResult, VerifyReport, assert_chunkwise_matches_step, assert_padding_invariance,
                     assert_state_passing, check_chunkwise_matches_step, check_padding_invariance, check_state_passing,
                     decode_token_by_token, verify)

__all__ = ["CheckResult", "VerifyReport", "assert_chunkwise_matches_step", "assert_padding_invariance",
           "assert_state_passing", "check_chunkwise_matches_step", "check_padding_invariance", "check_state_passing",
           "decode_token_by_token", "verify", "wiring_specs", "mlstm_inputs", "invalid_specs", "chunk_sizes"]


def __getattr__(name):  # strategies import hypothesis only when asked for
    if name in ("wiring_specs", "mlstm_inputs", "invalid_specs", "chunk_sizes", "MLSTMCase"):
        from . import strategies

        return getattr(strategies, name)
    raise AttributeError(name)
