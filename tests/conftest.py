import os

from hypothesis import HealthCheck, settings

# Hypothesis profiles: `ci` (default) keeps the suite to minutes; `thorough` for long runs:
#   XLSTM_HYPOTHESIS_PROFILE=thorough pytest tests/properties
settings.register_profile("ci", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("XLSTM_HYPOTHESIS_PROFILE", "ci"))
