import os

# On NVIDIA GPUs MLX's float32 matmuls may run in TF32 (~1e-3 precision); the float32 bounds in this
# suite are for true float32, so tests ask the driver for it (set before MLX initialises CUDA).
os.environ.setdefault("NVIDIA_TF32_OVERRIDE", "0")

import xlstm_metal  # noqa: E402,F401  (before any test imports mlx.core: on Linux CPU it loads a fast BLAS)
from xlstm_metal.fast_blas import ENV, prefer_fast_blas, tell_once  # noqa: E402

if not prefer_fast_blas():  # no fast BLAS here: subprocesses keep the bundled one too, without the notice
    os.environ.setdefault(ENV, "bundled")
    tell_once(lambda message: None)  # and this process does not warn either

from budget import load_profile  # noqa: E402  (hypothesis example counts: tests/budget.py)

load_profile()


def pytest_runtest_logreport(report):
    """``XLSTM_FAILURE_LOG=path``: each failure's traceback is appended to ``path`` as it happens, so a run cut
    off at a time limit (a GPU machine's call) still says why its tests failed, not only that they did."""
    path = os.environ.get("XLSTM_FAILURE_LOG")
    if path and report.failed:
        with open(path, "a") as fh:
            fh.write(f"=== {report.nodeid} ({report.when})\n{report.longreprtext}\n\n")
