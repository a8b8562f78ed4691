"""Example counts per hypothesis profile: `ci` (default, minutes in CI) or `thorough` (long runs).

    XLSTM_HYPOTHESIS_PROFILE=thorough python -m pytest tests/properties
"""
import os

THOROUGH = os.environ.get("XLSTM_HYPOTHESIS_PROFILE", "ci") == "thorough"


def scaled(ci_examples: int, thorough_examples: int) -> int:
    return thorough_examples if THOROUGH else ci_examples
