"""On Linux CPU the package loads a fast BLAS before MLX, or keeps a notice of how to get one that the command line
or the first model built on the CPU tells once; importing the package prints nothing and never fails."""
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

import xlstm_metal.fast_blas as fb

NO_STATE = {"loaded": None, "noticed": None, "told": None}


@pytest.fixture
def fresh(monkeypatch):
    """A process as it looks before MLX is imported, on Linux with the CPU wheel, with no fast BLAS installed."""
    monkeypatch.setattr(fb, "_state", dict(NO_STATE))
    monkeypatch.delitem(sys.modules, "mlx.core", raising=False)
    monkeypatch.delenv(fb.ENV, raising=False)
    monkeypatch.setattr(fb, "mlx_cpu_wheel", lambda: True)
    monkeypatch.setattr(fb, "_mkl_candidates", lambda: ["/nonexistent/libmkl_rt.so.3"])
    return fb


def told(fb) -> str:
    said = []
    fb.tell_once(said.append)
    return "".join(said)


def test_without_a_fast_blas_the_loader_loads_nothing_and_keeps_one_notice_told_once(fresh, capsys):
    assert fresh.prefer_fast_blas() is None and fresh.prefer_fast_blas() is None
    assert capsys.readouterr().err == ""  # loading is silent
    notice = told(fresh)
    assert "\n" not in notice and "xlstm-metal[cpu-fast]" in notice and f"{fb.ENV}=bundled" in notice
    assert told(fresh) == "" and not fresh.warn_once()  # once, whoever tells it


def test_the_first_model_built_on_the_cpu_warns_once(monkeypatch):
    import mlx.core as mx

    from xlstm_metal import xLSTMRunner

    monkeypatch.setattr(fb, "_state", dict(NO_STATE, noticed="no fast BLAS found; pip install 'xlstm-metal[cpu-fast]'"))
    with mx.stream(mx.cpu), pytest.warns(fb.SlowBLASWarning, match="cpu-fast"):
        xLSTMRunner.from_spec("xlstm_tiny")
    with mx.stream(mx.cpu), warnings.catch_warnings():
        warnings.simplefilter("error")  # the second model: no warning
        xLSTMRunner.from_spec("xlstm_tiny")


def test_the_env_var_keeps_the_bundled_blas_silently(fresh, capsys, monkeypatch):
    monkeypatch.setenv(fb.ENV, "bundled")
    monkeypatch.setattr(fb, "_load", lambda path: pytest.fail("nothing may be loaded"))
    assert fresh.prefer_fast_blas() is None
    assert capsys.readouterr().err == ""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="dlopen of a plain Linux library")
def test_a_library_without_cblas_is_refused_and_the_bundled_blas_kept(fresh, capsys, monkeypatch):
    monkeypatch.setenv(fb.ENV, "libm.so.6")
    assert fresh.prefer_fast_blas() is None
    assert "XLSTM_METAL_BLAS=libm.so.6 could not be loaded" in told(fresh)


def test_any_failure_falls_back_with_a_notice_instead_of_raising(fresh, capsys, monkeypatch):
    def broken():
        raise RuntimeError("odd site-packages")
    monkeypatch.setattr(fb, "mlx_cpu_wheel", broken)
    assert fresh.prefer_fast_blas() is None
    assert "fast BLAS skipped (RuntimeError: odd site-packages)" in told(fresh)


def test_off_linux_cpu_it_is_a_silent_no_op(fresh, capsys, monkeypatch):
    monkeypatch.setattr(fb, "_load", lambda path: pytest.fail("nothing may be loaded"))
    monkeypatch.setattr(fb, "mlx_cpu_wheel", lambda: False)
    assert fresh.prefer_fast_blas() is None
    assert capsys.readouterr().err == ""


def test_after_mlx_is_imported_nothing_is_loaded_and_the_notice_says_to_import_us_first(fresh, capsys, monkeypatch):
    monkeypatch.setattr(fb, "_load", lambda path: pytest.fail("nothing may be loaded"))
    monkeypatch.setitem(sys.modules, "mlx.core", object())
    assert fresh.prefer_fast_blas() is None
    assert "import xlstm_metal first" in told(fresh)


def test_the_cpu_wheel_is_recognised_without_importing_mlx():
    on_cpu_wheel = sys.platform.startswith("linux") and any(
        (Path(p) / "mlx_cpu.libs").is_dir() for p in sys.path if p)
    assert fb.mlx_cpu_wheel() == on_cpu_wheel


_GEMM = textwrap.dedent("""
    import time, xlstm_metal.runner, xlstm_metal.fast_blas as fb, mlx.core as mx
    mx.set_default_device(mx.cpu)
    a, b = mx.random.normal((256, 512)), mx.random.normal((512, 2752)); mx.eval(a, b, a @ b)
    best = 1e9
    for _ in range(3):
        t = time.perf_counter(); mx.eval(a @ b); best = min(best, time.perf_counter() - t)
    print(fb._state["loaded"], best)
""")


def _gemm_seconds(env_value):
    env = {k: v for k, v in os.environ.items() if k != fb.ENV}
    if env_value:
        env[fb.ENV] = env_value
    out = subprocess.run([sys.executable, "-c", _GEMM], capture_output=True, text=True, env=env, timeout=120)
    loaded, seconds = out.stdout.split()
    return loaded, float(seconds)


@pytest.mark.skipif(not fb.mlx_cpu_wheel() or not any(os.path.isfile(p) for p in fb._mkl_candidates()),
                    reason="needs Linux CPU MLX and the cpu-fast extra (MKL)")
def test_with_mkl_installed_importing_the_package_makes_mlx_matmuls_fast():
    fast_lib, fast = _gemm_seconds(None)
    bundled_lib, bundled = _gemm_seconds("bundled")
    assert "libmkl_rt" in fast_lib and bundled_lib == "None"
    assert fast * 3 < bundled, (fast, bundled)


def test_without_mlx_installed_it_is_silent(monkeypatch, capsys):
    monkeypatch.setattr(fb, "_state", dict(NO_STATE))
    monkeypatch.delenv(fb.ENV, raising=False)
    monkeypatch.setitem(sys.modules, "mlx", None)  # what an absent package looks like to the import system
    assert fb.mlx_cpu_wheel() is False and fb.prefer_fast_blas() is None
    assert capsys.readouterr().err == ""


_MISSING = {**{k: v for k, v in os.environ.items() if k != fb.ENV}, fb.ENV: "/nonexistent/libblas.so"}


@pytest.mark.skipif(not fb.mlx_cpu_wheel(), reason="the notice exists on Linux CPU MLX")
def test_importing_the_package_prints_nothing_and_the_command_line_tells_the_notice_once():
    code = "import xlstm_metal, xlstm_metal.runner, mlx.core"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_MISSING, timeout=120)
    assert out.returncode == 0 and out.stdout == "" and out.stderr == ""
    cli = subprocess.run([sys.executable, "-m", "xlstm_metal", "plan", "xlstm_tiny"], capture_output=True,
                         text=True, env=_MISSING, timeout=120)
    assert cli.returncode == 0, cli.stderr
    assert cli.stderr.count("could not be loaded as a BLAS") == 1 and cli.stderr.count("\n") == 1
