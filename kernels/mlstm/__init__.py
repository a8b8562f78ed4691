"""mLSTM kernel family. Every mLSTM kernel, whatever its form or backend, has this signature::

    fn(q, k, v, i, f, state=None, *, chunk_size=64, eps=1e-6, mask=None) -> (h, (C, n, m))

    q, k   [B, NH, S, DK]   (q is NOT pre-scaled: the kernel scales it by DK**-0.5)
    v      [B, NH, S, DV]
    i, f   [B, NH, S]        input / forget gate pre-activations (already soft-capped by the layer)
    state  None or (C [B, NH, DK, DV], n [B, NH, DK], m [B, NH]), float32; None = zeros
    mask   None or [B, S] bool, True = real token. At False positions the state does not change
           (forget gate 1, input gate -inf) and h is 0.
    h      [B, NH, S, DV] in v.dtype; the returned state is float32.

Forms: ``chunkwise`` (parallel inside a chunk, recurrent across chunks), ``sequence`` (a loop of steps),
``step`` (S == 1); all compute the recurrence in ``reference.py``.
"""
from . import native  # noqa: E402,F401  (registers the native kernels)
from . import fused_step  # noqa: E402,F401  (registers the fused GPU step kernels; they verify themselves)
from . import compiled  # noqa: E402,F401  (registers the compiled chunkwise kernel, picked on the GPU)
from . import tc_chunkwise  # noqa: E402,F401  (registers the CUDA bf16 tensor-core chunkwise kernel; it checks itself)
