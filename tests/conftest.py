import os

# On NVIDIA GPUs MLX's float32 matmuls may run in TF32 (~1e-3 precision); the float32 bounds in this
# suite are for true float32, so tests ask the driver for it (set before MLX initialises CUDA).
os.environ.setdefault("NVIDIA_TF32_OVERRIDE", "0")

from hypothesis import HealthCheck, settings  # noqa: E402

# Hypothesis profiles: `ci` (default) keeps the suite to minutes; `thorough` for long runs, `gpu` below:
#   XLSTM_HYPOTHESIS_PROFILE=thorough pytest tests/properties
settings.register_profile("ci", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# `gpu`: on the GPU machine every example compiles new kernels for its shapes (~4 s each on an H200, so the ci
# profile's 25 took 100 s per property there); 6 examples per property run the whole suite inside one device call
settings.register_profile("gpu", max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("XLSTM_HYPOTHESIS_PROFILE", "ci"))


def pytest_runtest_logreport(report):
    """``XLSTM_FAILURE_LOG=path``: each failure's traceback is appended to ``path`` as it happens, so a run cut
    off at a time limit (a GPU machine's call) still says why its tests failed, not only that they did."""
    path = os.environ.get("XLSTM_FAILURE_LOG")
    if path and report.failed:
        with open(path, "a") as fh:
            fh.write(f"=== {report.nodeid} ({report.when})\n{report.longreprtext}\n\n")
