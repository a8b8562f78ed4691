"""The batch-1 GEMV kernel (kernels/gemv.py), run on the CPU: its text compiled as C++/OpenMP with the warp
reduction emulated, against ``x @ W.T``. On a GPU the same text checks itself on first use."""
from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from cpu_emulator import GEMV_HEADER, IDIOMS, CpuKernel, compiler_available
from xlstm_metal.kernels import gemv
from xlstm_metal.kernels.mlstm import fused_chunkwise

pytestmark = pytest.mark.skipif(not compiler_available(), reason="needs a C++ compiler with OpenMP (g++)")


def emulated_kernel():
    return CpuKernel("gemv", gemv.INPUTS, gemv.OUTPUTS, fused_chunkwise.source(gemv.BODY, IDIOMS), header=GEMV_HEADER)


def test_the_algorithm_passes_its_own_first_use_check():
    gemv._verified.pop("cpu-emulated", None)
    kernel = emulated_kernel()
    assert gemv.self_check("cpu-emulated", lambda: kernel, weight_dtype=mx.float32)


@pytest.mark.parametrize("N, K, bias", [(1, 8, False), (17, 264, True), (40, 2056, False)])
def test_it_computes_the_matrix_vector_product(N, K, bias):
    """Rows past the last warp's, K not a multiple of a warp's 4 x 32 pieces, a bias; float32 arrays here, so the
    only difference is the order of the float32 sums."""
    rng = np.random.default_rng(N + K)
    w = mx.array(rng.normal(size=(N, K)).astype(np.float32))
    x = mx.array(rng.normal(size=(1, 1, K)).astype(np.float32))
    b = mx.array(rng.normal(size=(N,)).astype(np.float32)) if bias else None
    fn = gemv.make_gemv(lambda: emulated_kernel(), weight_dtype=mx.float32)
    got = fn(x, w, b)
    want = x @ w.T + (0 if b is None else b)
    assert got.shape == (1, 1, N)
    assert float(mx.abs(got - want).max()) <= 1e-5 * max(1.0, float(mx.abs(want).max()))


def test_shapes_it_does_not_cover_run_the_plain_product():
    fn = gemv.make_gemv(lambda: pytest.fail("no launch expected"))
    w = mx.ones((4, 12), mx.bfloat16)  # K not a multiple of 8
    for x in (mx.ones((1, 12), mx.bfloat16), mx.ones((2, 8), mx.bfloat16)):  # ... or two rows
        ww = w if x.shape[-1] == 12 else mx.ones((4, 8), mx.bfloat16)
        assert mx.array_equal(fn(x, ww), x @ ww.T)


def test_enabled_it_carries_every_one_row_product_of_a_model(monkeypatch):
    """With the kernel enabled (here its CPU emulation, float32), a decoded token goes through it for the merged
    input projections, out_proj, proj_down and the lm_head, and the logits stay those of ``x @ W.T``."""
    from xlstm_metal import xLSTMRunner

    runner = xLSTMRunner.from_spec("xlstm_tiny", dtype="float32", seed=0, compile=False)
    _, state = runner([[3, 1, 4, 1, 5]])
    want, _ = runner([[9]], state)
    calls = []
    emulated = gemv.make_gemv(lambda: emulated_kernel(), weight_dtype=mx.float32)

    def counting(x, w, b=None):
        calls.append(tuple(w.shape))
        return emulated(x, w, b)

    monkeypatch.setattr(gemv, "_gemv", counting)
    monkeypatch.setitem(gemv._active, "on", True)
    got, _ = runner([[9]], state)
    blocks = len([n for n in runner.graph.compute_nodes() if runner.graph.node(n)["type"] == "mlstm"])
    assert len(calls) == 4 * blocks + 1  # per block: merged projections, out_proj, merged FFN up, proj_down; lm_head
    assert float(mx.abs(got - want).max()) <= 1e-4 * max(1.0, float(mx.abs(want).max()))


def test_it_stays_off_without_cuda():
    if mx.cuda.is_available():
        pytest.skip("CUDA is present")
    assert gemv.enable() is False and not gemv.enabled()
