"""Parity testing for your own architectures: ``assert_chunkwise_matches_step("my_arch.yaml")`` and friends in
a pytest suite; hypothesis strategies (``wiring_specs``, ``mlstm_inputs``, ``invalid_specs``, ``chunk_sizes``)
live in ``xlstm_metal.testing.strategies`` and need the ``test`` extra.
"""
from .checks import (CheckResult, VerifyReport, assert_chunkwise_matches_step, assert_padding_invariance,
                     assert_state_passing, check_chunkwise_matches_step, check_padding_invariance,
                     check_state_passing, decode_token_by_token, verify)

STRATEGIES = ("wiring_specs", "mlstm_inputs", "invalid_specs", "chunk_sizes")
__all__ = ["CheckResult", "VerifyReport", "assert_chunkwise_matches_step", "assert_padding_invariance",
           "assert_state_passing", "check_chunkwise_matches_step", "check_padding_invariance", "check_state_passing",
           "decode_token_by_token", "verify", *STRATEGIES]


def __getattr__(name):  # strategies import hypothesis only when asked for
    if name in (*STRATEGIES, "MLSTMCase"):
        from . import strategies

        return getattr(strategies, name)
    raise AttributeError(name)
