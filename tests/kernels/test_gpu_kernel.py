"""The shared GPU-kernel machinery (kernels/gpu.py): one compiled kernel per (backend, name), one error measure;
first-use verdicts checked once per process, and decided or forgotten on request."""
import warnings

import mlx.core as mx
import pytest

from xlstm_metal.kernels import gpu as gk


@pytest.fixture
def fake_compilers(monkeypatch):
    built = []

    def fake(lang):
        def make(**kw):
            built.append((lang, kw))
            return object()
        return make

    monkeypatch.setattr(mx.fast, "cuda_kernel", fake("cuda"))
    monkeypatch.setattr(mx.fast, "metal_kernel", fake("metal"))
    monkeypatch.setattr(gk, "_compiled", {})
    return built


def test_a_kernel_is_compiled_once_per_backend_and_name(fake_compilers):
    kernel = gk.GpuKernel("copy", "y_[TID] = x_[TID];", ("x_",), ("y_",), header="// h")
    a = kernel.compiled("cuda")
    assert kernel.compiled("cuda") is a
    m = kernel.compiled("metal")
    assert m is not a and [lang for lang, _ in fake_compilers] == ["cuda", "metal"]
    assert fake_compilers[1][1] == {"name": "copy", "input_names": ["x_"], "output_names": ["y_"], "header": "// h",
                                    "source": "y_[int(thread_position_in_threadgroup.x)] = "
                                              "x_[int(thread_position_in_threadgroup.x)];"}


def test_a_backend_without_a_kernel_language_is_named_in_the_error(fake_compilers):
    with pytest.raises(ValueError, match="no GPU kernel language for backend 'cpu'"):
        gk.GpuKernel("copy", "", ("x_",), ("y_",)).compiled("cpu")


def test_the_error_measure_is_relative_to_the_reference_and_never_hides_a_nan():
    """One measure for first-use checks, kernel bounds and parity checks: max |got - want| / max(1, max |want|),
    worst over a result's arrays; NaN or infinity anywhere gives NaN, a shape mismatch infinity, empty arrays 0."""
    want = (mx.array([10.0, -20.0]), (mx.array([0.5]),))
    assert gk.max_error((mx.array([11.0, -20.0]), (mx.array([0.25]),)), want) == (1.0, 0.25)  # each the worst
    assert gk.relative_error(mx.array([0.5, 0.0]), mx.array([0.0, 0.0])) == 0.5
    nan = gk.relative_error([mx.array([1.0]), mx.array([float("nan")])], [mx.array([1.0]), mx.array([1.0])])
    inf = gk.relative_error(mx.array([1.0, float("inf")]), mx.array([1.0, 1.0]))
    assert nan != nan and inf != inf
    assert gk.relative_error(mx.ones((2, 3)), mx.ones((3, 2))) == float("inf")
    assert gk.max_error(mx.zeros((0, 4)), mx.zeros((0, 4))) == (0.0, 0.0)


def test_a_first_use_verdict_is_checked_once_and_can_be_decided_or_forgotten():
    calls = []

    def errors():
        calls.append(1)
        return 0.5

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert not gk.check_once("test kernel", "cpu-test", errors)
        assert not gk.check_once("test kernel", "cpu-test", errors)
    assert len(calls) == 1 and any("test kernel kernel disabled" in str(w.message) for w in caught)
    gk.set_verdict("test kernel", "cpu-test", True)  # decided: no check
    assert gk.check_once("test kernel", "cpu-test", errors) and len(calls) == 1
    gk.set_verdict("test kernel", "cpu-test", None)  # forgotten: checked again
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        assert not gk.check_once("test kernel", "cpu-test", errors)
    assert len(calls) == 2
    gk.set_verdict("test kernel", "cpu-test", None)


def test_a_kernel_that_cannot_run_refuses_itself_with_the_reason():
    def errors():
        raise RuntimeError("does not compile")

    with pytest.warns(RuntimeWarning, match="does not compile"):
        assert not gk.check_once("test broken", "cpu-test", errors)
    gk.set_verdict("test broken", "cpu-test", None)
