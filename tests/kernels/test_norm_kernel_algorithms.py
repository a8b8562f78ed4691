"""The fused norm kernels (residual add + RMSNorm, per-head norm + output gate), run on the CPU: their text compiled
as C++/OpenMP (``cpu_emulator.py``), against the native ops, alone and inside a whole model's plan. On a GPU the
same texts check themselves on first use."""
from __future__ import annotations

import warnings

import mlx.core as mx
import numpy as np
import pytest

from cpu_emulator import IDIOMS, CpuKernel, compiler_available
from xlstm_metal import xLSTMRunner
from xlstm_metal.kernels import KernelInfo, add_rms_norm, gpu, head_norm_gate, registry
from xlstm_metal.plan import make_plan

pytestmark = pytest.mark.skipif(not compiler_available(), reason="needs a C++ compiler with OpenMP (g++)")


def emulated(module, edit=lambda body: body):
    k = module.KERNEL
    return CpuKernel(k.name, k.inputs, k.outputs, gpu.source(edit(k.body), IDIOMS))


@pytest.mark.parametrize("module", [add_rms_norm, head_norm_gate], ids=["add_rms_norm", "head_norm_gate"])
def test_each_algorithm_passes_its_first_use_check_and_is_float32_exact(module):
    gpu.set_verdict(module.FUSED.name, "cpu-emulated", None)
    assert module.FUSED.check("cpu-emulated", module._make("cpu-emulated", emulated(module)), dtype=mx.float32)
    # float32 arrays: only the order of the float32 sums differs from the native ops
    assert module.check_errors(module._make("cpu-emulated", emulated(module)), mx.float32) <= 1e-5


@pytest.mark.parametrize("module, edit", [
    (add_rms_norm, lambda body: body.replace("s[u] * inv *", "s[u] * inv * 0.9f *")),
    (head_norm_gate, lambda body: body.replace("- mean) * inv", "- mean) * inv * 0.9f")),
], ids=["add_rms_norm", "head_norm_gate"])
def test_a_kernel_that_computes_something_else_refuses_itself_with_a_warning(module, edit):
    assert edit(module.KERNEL.body) != module.KERNEL.body
    gpu.set_verdict(module.FUSED.name, "cpu-broken", None)
    with pytest.warns(RuntimeWarning, match="kernel disabled"):
        assert not module.FUSED.check("cpu-broken", module._make("cpu-broken", emulated(module, edit)),
                                      dtype=mx.float32)


def test_add_rms_norm_writes_the_sum_as_the_add_rounds_it_and_the_norm_of_that_sum():
    rng = np.random.default_rng(1)
    a, b = (mx.array(rng.normal(size=(2, 3, 520)).astype(np.float32)) for _ in range(2))
    w = mx.array(rng.normal(size=(520,)).astype(np.float32))
    s, y = add_rms_norm._make("cpu-emulated", emulated(add_rms_norm))(a, b, w, 1e-6)
    assert mx.array_equal(s, a + b)
    want = mx.fast.rms_norm(a + b, w, 1e-6)
    assert float(mx.abs(y - want).max()) <= 1e-5 * float(mx.abs(want).max())


def test_a_new_prompt_length_reuses_the_compiled_head_norm_kernel():
    """Template arguments pick a compiled specialisation: the sequence length must not be one (every new prompt
    length would compile a new kernel, seconds on a GPU); it is read at run time."""
    run = emulated(head_norm_gate)
    templates = []

    def recording(**kw):
        templates.append(kw["template"])
        return run(**kw)

    fn = head_norm_gate._make("cpu-emulated", recording)
    rng = np.random.default_rng(3)
    for S in (1, 5, 12):
        h = mx.array(rng.normal(size=(1, 2, S, 16)).astype(np.float32))
        o = mx.array(rng.normal(size=(1, S, 32)).astype(np.float32))
        w = mx.array(rng.normal(size=(32,)).astype(np.float32))
        got = fn(h, o, w, None, 1e-6)
        assert float(mx.abs(got - head_norm_gate.head_norm_gate_native(h, o, w, None, 1e-6)).max()) <= 1e-5
    assert templates[0] == templates[1] == templates[2]


def test_head_norm_gate_reads_h_in_the_cell_layout_and_normalises_each_head_alone():
    """h [B, NH, S, DV] from the cell kernels; one head scaled by 1000 changes no other head's output."""
    rng = np.random.default_rng(2)
    B, NH, S, DV = 2, 3, 4, 40
    h = mx.array(rng.normal(size=(B, NH, S, DV)).astype(np.float32))
    o = mx.array(rng.normal(size=(B, S, NH * DV)).astype(np.float32))
    w = mx.array(rng.normal(size=(NH * DV,)).astype(np.float32))
    fn = head_norm_gate._make("cpu-emulated", emulated(head_norm_gate))
    got = fn(h, o, w, None, 1e-6)
    assert got.shape == (B, S, NH * DV)
    want = head_norm_gate.head_norm_gate_native(h, o, w, None, 1e-6)
    assert float(mx.abs(got - want).max()) <= 1e-5
    scaled = fn(h * mx.array([1.0, 1000.0, 1.0]).reshape(1, NH, 1, 1), o, w, None, 1e-6)
    others = mx.array([True] * DV + [False] * DV + [True] * DV)
    assert float(mx.abs(mx.where(others, scaled - got, 0.0)).max()) <= 1e-6


@pytest.fixture
def emulated_fusion_kernels(monkeypatch):
    """The emulated kernels registered above the native ones, as the CUDA/Metal kernels are on a GPU."""
    for family, module in (("add_rms_norm", add_rms_norm), ("head_norm_gate", head_norm_gate)):
        info = KernelInfo(family, "fused", f"emulated_{family}", module._make("cpu-emulated", emulated(module)),
                          backend="cpu-emulated", priority=50, differentiable=False)
        monkeypatch.setitem(registry._KERNELS, (family, info.name), info)


@pytest.mark.parametrize("seq_len", [1, pytest.param(12, marks=pytest.mark.slow)])  # 12: chunkwise prefill; its
# emulated rows are slow (1024 threads each), so it runs in the slow tier
def test_a_model_planned_with_the_fused_kernels_computes_what_the_native_plan_does(seq_len, emulated_fusion_kernels):
    runner = xLSTMRunner.from_spec("xlstm_tiny", seed=0, compile=False)  # the emulator cannot run under mx.compile
    plan = runner.plan(seq_len)
    fused = [s for s in plan.steps if s.fusion_kernel is not None]
    assert fused and all(s.fusion_kernel.name == "emulated_add_rms_norm" for s in fused)
    assert all("emulated_head_norm_gate" in s.describe_kernels() for s in plan.steps if s.type == "mlstm")
    tokens = mx.array(np.random.default_rng(3).integers(0, 512, size=(2, seq_len)))
    got = runner(tokens)[0]
    got_last = runner(tokens, logits="last")[0]  # prefill computing only the last position after the last cell
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        registry._KERNELS.pop(("add_rms_norm", "emulated_add_rms_norm"))
        registry._KERNELS.pop(("head_norm_gate", "emulated_head_norm_gate"))
    runner_native = xLSTMRunner.from_spec("xlstm_tiny", seed=0)
    want = runner_native(tokens)[0]
    assert float(mx.abs(got - want).max()) <= 1e-4 * max(1.0, float(mx.abs(want).max()))
    want_last = runner_native(tokens, logits="last")[0]
    assert float(mx.abs(got_last - want_last).max()) <= 1e-4 * max(1.0, float(mx.abs(want).max()))


def test_training_plans_fuse_only_with_kernels_gradients_flow_through(emulated_fusion_kernels):
    plan = make_plan(xLSTMRunner.from_spec("xlstm_tiny", seed=0).graph, 16, training=True)
    assert {s.fusion_kernel.name for s in plan.steps if s.fusion_kernel} == {"native_add_rms_norm"}
    assert all(a.differentiable for s in plan.steps for a in s.aux)


@pytest.mark.parametrize("module", [add_rms_norm, head_norm_gate], ids=["add_rms_norm", "head_norm_gate"])
def test_cuda_and_metal_sources_differ_only_in_idioms(module):
    """One algorithm text: the CUDA and Metal kernels differ only on the lines holding an idiom word's rendering
    (thread index, shared memory, barrier, unroll), so what the emulator checks is what both GPUs run."""
    k = module.KERNEL

    def strip(backend):
        src = gpu.source(k.body, backend)
        return [line for line in src.splitlines() if not any(v in line for v in gpu.IDIOMS[backend].values())]

    assert strip("cuda") == strip("metal") and len(strip("cuda")) > 20
