"""Hypothesis example counts, set here and nowhere else.

Profiles (``XLSTM_HYPOTHESIS_PROFILE``): ``ci`` (default: the suite in minutes on two cores), ``thorough`` (long
runs: ``XLSTM_HYPOTHESIS_PROFILE=thorough python -m pytest tests/properties``) and ``gpu`` (every example compiles
new kernels for its shapes on a GPU, seconds each, so a handful per property fits one device call).
"""
import os

from hypothesis import HealthCheck, settings

PROFILE = os.environ.get("XLSTM_HYPOTHESIS_PROFILE", "ci")
DEFAULT = {"ci": 25, "thorough": 2000, "gpu": 6}


def examples(ci: int, thorough: int | None = None) -> int:
    """A test's example count: ``ci`` in CI, ``thorough`` (default 80 x ci) in long runs, at most the gpu profile's."""
    if PROFILE == "thorough":
        return thorough if thorough is not None else 80 * ci
    return min(ci, DEFAULT["gpu"]) if PROFILE == "gpu" else ci


def load_profile() -> None:
    for name, count in DEFAULT.items():
        settings.register_profile(name, max_examples=count, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    settings.load_profile(PROFILE)
