"""On a GPU (CUDA or Metal): the fused norm kernels pass their first-use check, are what the plan picks, and match
the native ops in every dtype a model runs in. Skipped where no GPU backend is present (the CPU suite runs their
text through the emulator: test_norm_kernel_algorithms.py)."""
from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from xlstm_metal.kernels import add_rms_norm, head_norm_gate, select_kernel
from xlstm_metal.kernels.gpu import backend_present

BACKEND = next((b for b in ("cuda", "metal") if backend_present(b)), None)
pytestmark = pytest.mark.skipif(BACKEND is None, reason="needs a CUDA or Metal GPU backend")
DTYPES = {"float32": 1e-5, "bfloat16": 2e-2, "float16": 4e-3}


@pytest.mark.parametrize("family", ["add_rms_norm", "head_norm_gate"])
@pytest.mark.parametrize("dtype", list(DTYPES))
def test_the_plan_picks_the_fused_kernel_on_this_gpu(family, dtype):
    assert select_kernel(family, "fused", device="gpu", dtype=dtype).name == f"{BACKEND}_{family}"


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("shape", [(1, 1, 4096), (2, 7, 520), (3, 1, 64)])
def test_add_rms_norm_matches_the_native_ops(dtype, shape):
    rng = np.random.default_rng(sum(shape))
    dt = getattr(mx, dtype)
    a, b, w = (mx.array(rng.normal(size=s).astype(np.float32)).astype(dt) for s in (shape, shape, shape[-1:]))
    s, y = add_rms_norm._make(BACKEND)(a, b, w, 1e-6)
    s_want, y_want = add_rms_norm.add_rms_norm_native(a, b, w, 1e-6)
    assert s.dtype == dt and mx.array_equal(s, s_want)  # the residual stream exactly as the add rounds it
    err = float(mx.abs(y.astype(mx.float32) - y_want.astype(mx.float32)).max())
    assert err <= DTYPES[dtype] * max(1.0, float(mx.abs(y_want.astype(mx.float32)).max()))


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("B, NH, S, DV, bias", [(1, 8, 1, 512, False), (2, 3, 9, 72, True), (1, 2, 130, 256, False)])
def test_head_norm_gate_matches_the_native_ops(dtype, B, NH, S, DV, bias):
    rng = np.random.default_rng(B * S + DV)
    dt = getattr(mx, dtype)
    arr = lambda *s: mx.array(rng.normal(size=s).astype(np.float32)).astype(dt)  # noqa: E731
    h, o, w = arr(B, NH, S, DV) * 2.0 + 0.5, arr(B, S, NH * DV), arr(NH * DV)
    b = arr(NH * DV) if bias else None
    got = head_norm_gate._make(BACKEND)(h, o, w, b, 1e-6)
    want = head_norm_gate.head_norm_gate_native(h, o, w, b, 1e-6)
    assert got.dtype == want.dtype and got.shape == want.shape
    err = float(mx.abs(got.astype(mx.float32) - want.astype(mx.float32)).max())
    assert err <= DTYPES[dtype] * max(1.0, float(mx.abs(want.astype(mx.float32)).max()))
