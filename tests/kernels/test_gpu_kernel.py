"""The shared GPU-kernel machinery (kernels/gpu.py): one compiled kernel per (backend, name), its source read once;
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
    reads = []

    def source():
        reads.append(1)
        return "y_[0] = x_[0];"

    a = gk.gpu_kernel("cuda", "copy", ["x_"], ["y_"], source)
    assert gk.gpu_kernel("cuda", "copy", ["x_"], ["y_"], source) is a
    m = gk.gpu_kernel("metal", "copy", ["x_"], ["y_"], source, header="// h")
    assert m is not a and len(reads) == 2
    assert [lang for lang, _ in fake_compilers] == ["cuda", "metal"]
    assert fake_compilers[1][1] == {"name": "copy", "input_names": ["x_"], "output_names": ["y_"],
                                    "source": "y_[0] = x_[0];", "header": "// h"}


def test_a_backend_without_a_kernel_language_is_named_in_the_error(fake_compilers):
    with pytest.raises(ValueError, match="no GPU kernel language for backend 'cpu'"):
        gk.gpu_kernel("cpu", "copy", ["x_"], ["y_"], "")


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
