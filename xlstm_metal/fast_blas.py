"""A fast BLAS for MLX on Linux CPU.

The ``mlx[cpu]`` wheel links the netlib *reference* BLAS, whose matrix products are 10–50× slower than an
optimised one. MLX resolves ``cblas_sgemm`` through the dynamic linker, so a BLAS loaded with ``RTLD_GLOBAL``
before ``mlx.core`` is imported takes its place. ``prefer_fast_blas`` does that (the package calls it on
import, silently): it loads MKL from the ``cpu-fast`` extra (or ``XLSTM_METAL_BLAS=/path/to/libblas.so``), and where
none is found it keeps a one-line notice that is told once: by the command line before a command runs
(``tell_once``), or as a ``SlowBLASWarning`` when a model is built on the CPU (``warn_once``).
``XLSTM_METAL_BLAS=bundled`` keeps MLX's own BLAS silently.
Elsewhere (macOS, the CUDA wheel) it does nothing. It never raises: any failure keeps the bundled BLAS.
"""
from __future__ import annotations

import ctypes
import importlib.util
import os
import sys
import warnings
from pathlib import Path

ENV = "XLSTM_METAL_BLAS"
EXTRA_HINT = "pip install 'xlstm-metal[cpu-fast]'"
_MKL_NAMES = ("libmkl_rt.so.3", "libmkl_rt.so.2", "libmkl_rt.so")
_state: dict[str, str | None] = {"loaded": None, "noticed": None, "told": None}


class SlowBLASWarning(UserWarning):
    """MLX on this Linux CPU multiplies matrices with its bundled reference BLAS."""


def mlx_cpu_wheel() -> bool:
    """True on Linux with the ``mlx[cpu]`` wheel (its bundled BLAS sits in ``mlx_cpu.libs``), found without
    importing MLX."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        spec = importlib.util.find_spec("mlx")
    except (ImportError, ValueError):  # MLX not installed (or blocked): nothing to speed up
        return False
    locations = list(spec.submodule_search_locations or []) if spec else []
    return any((Path(loc).parent / "mlx_cpu.libs").is_dir() for loc in locations)


def _mkl_candidates() -> list[str]:
    """``libmkl_rt`` as pip installs it: in the environment's ``lib`` (or a user prefix), else on the linker path."""
    prefixes = [sys.prefix, sys.base_prefix, os.path.expanduser("~/.local")]
    found = [str(Path(p) / "lib" / n) for p in prefixes for n in _MKL_NAMES if (Path(p) / "lib" / n).is_file()]
    return found or list(_MKL_NAMES)


def _load(path: str) -> bool:
    """dlopen ``path`` globally; only a library that exports ``cblas_sgemm`` counts."""
    try:
        lib = ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
        return hasattr(lib, "cblas_sgemm")
    except OSError:
        return False


def _notice(message: str) -> None:
    if _state["noticed"] is None:
        _state["noticed"] = message


def tell_once(say) -> bool:
    """Pass the pending notice (if any, and not told yet) to ``say``; True if it did."""
    message = _state["noticed"]
    if message is None or _state.get("told"):
        return False
    _state["told"] = message
    say(message)
    return True


def warn_once() -> bool:
    """The pending notice as a ``SlowBLASWarning``, once per process (a model is being built on the CPU)."""
    return tell_once(lambda m: warnings.warn(f"xlstm_metal: {m}", SlowBLASWarning, stacklevel=4))


def loaded() -> str | None:
    """The path of the fast BLAS MLX uses, None for its bundled one."""
    return _state["loaded"]


def set_threads(n: int) -> bool:
    """Let the loaded BLAS use ``n`` threads (MKL or OpenBLAS); False where none is loaded or it has no such call."""
    if not _state["loaded"]:
        return False
    lib = ctypes.CDLL(_state["loaded"], mode=ctypes.RTLD_GLOBAL)
    for name in ("MKL_Set_Num_Threads", "openblas_set_num_threads"):
        if hasattr(lib, name):
            getattr(lib, name)(ctypes.c_int(int(n)))
            return True
    return False


def prefer_fast_blas() -> str | None:
    """Load a fast BLAS for MLX if this is Linux CPU MLX not yet imported; the loaded path, or None."""
    try:
        choice = os.environ.get(ENV, "").strip()
        if _state["loaded"] or choice == "bundled" or not mlx_cpu_wheel():
            return _state["loaded"]
        if "mlx.core" in sys.modules:  # too late: MLX may already have bound its BLAS symbols
            _notice(f"mlx.core was imported before xlstm_metal, so MLX keeps its bundled reference BLAS "
                    f"(import xlstm_metal first; {ENV}=bundled hides this)")
            return None
        for path in [choice] if choice else _mkl_candidates():
            if _load(path):
                _state["loaded"] = path
                return path
        what = f"{ENV}={choice} could not be loaded as a BLAS" if choice else "no fast BLAS found"
        _notice(f"{what}; MLX uses its bundled reference BLAS (matrix products ~15x slower on CPU): "
                f"{EXTRA_HINT} adds MKL; {ENV}=bundled hides this")
    except Exception as exc:  # never let a speed-up break the import
        _notice(f"fast BLAS skipped ({type(exc).__name__}: {exc}); {ENV}=bundled hides this")
    return None
