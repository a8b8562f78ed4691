"""The mLSTM layer of xLSTMLarge: projections, soft-capped gates, the mLSTM cell, per-head norm, output gate.

The cell itself is a kernel chosen by the plan (``ctx.kernel``); this block only prepares its
inputs and post-processes ``h``. Weight names follow the official checkpoint (``q``, ``k``, ``v``,
``ogate_preact``, ``igate_preact``, ``fgate_preact``, ``multihead_norm``, ``out_proj``; fused:
``qkv_opreact``, ``ifgate_preact``). For inference the input projections are merged into one
matmul (``merge_projections()``, see ``blocks/projections.py``); the names above stay the parameters.
"""
from __future__ import annotations

from typing import Literal

import mlx.core as mx
import mlx.nn as nn
from pydantic import Field

from .base import Block, BlockParams, ShapeError, TensorType, register_block, tp_reduce
from .multihead_layer_norm import multihead_layer_norm
from .ops import apply_linear, sigmoid_gate, small_init_std, soft_cap
from .projections import MergeableProjections, projection
from .swiglu import linear


class MLSTMParams(BlockParams):
    num_heads: int = Field(gt=0, description="Number of mLSTM heads (each with its own C, n, m state).")
    qk_dim_factor: float = Field(0.5, gt=0, description="Query/key width = int(dim * qk_dim_factor).")
    v_dim_factor: float = Field(1.0, gt=0, description="Value width = int(dim * v_dim_factor).")
    gate_soft_cap: float | None = Field(15.0, gt=0, description="Input/forget gate pre-activations are soft-capped to this.")
    norm_eps: float = Field(1e-6, gt=0, description="Epsilon of the per-head layer norm.")
    eps: float = Field(1e-6, gt=0, description="Epsilon of the cell's denominator max(|q·n|, exp(-m)) + eps.")
    use_bias: bool = Field(False, description="Biases on q/k/v/o/out projections (gates always have biases).")
    weight_mode: Literal["single", "fused"] = Field("single", description="single: separate q,k,v,o,i,f weights; fused: qkv_opreact + ifgate_preact.")
    norm_reduction_force_float32: bool = Field(True, description="Per-head norm reduces in float32.")


class _Norm(nn.Module):
    """Holds ``multihead_norm.weight`` (and bias) under the official key."""

    def __init__(self, dim: int, bias: bool):
        super().__init__()
        self.weight = mx.ones((dim,))
        if bias:
            self.bias = mx.zeros((dim,))


@register_block
class MLSTM(MergeableProjections, Block):
    type_name = "mlstm"
    Params = MLSTMParams
    stateful = True
    kernel_family = "mlstm"
    aux_kernels = ("head_norm_gate",)
    summary = "mLSTM layer (matrix memory, exponential gating) with its recurrent state."

    def __init__(self, params: MLSTMParams, inputs):
        super().__init__(params, inputs)
        D = inputs[0].dim
        nh = params.num_heads
        self.qk_dim, self.v_dim = int(D * params.qk_dim_factor), int(D * params.v_dim_factor)
        std, b = small_init_std(D), params.use_bias
        if params.weight_mode == "single":
            self.q = projection(D, self.qk_dim, b, std)
            self.k = projection(D, self.qk_dim, b, std)
            self.v = projection(D, self.v_dim, b, std)
            self.ogate_preact = projection(D, self.v_dim, b, std)
            self.igate_preact = projection(D, nh, True, std)
            self.fgate_preact = projection(D, nh, True, std)
            self.igate_preact.bias = mx.full((nh,), -10.0)
            self.fgate_preact.bias = mx.linspace(3.0, 6.0, nh)
        else:
            self.qkv_opreact = projection(D, 2 * self.qk_dim + 2 * self.v_dim, b, std)
            self.ifgate_preact = projection(D, 2 * nh, True, std)
            self.ifgate_preact.bias = mx.concatenate([mx.full((nh,), -10.0), mx.linspace(3.0, 6.0, nh)])
        self.multihead_norm = _Norm(self.v_dim, b)
        self.out_proj = linear(self.v_dim, D, b, small_init_std(self.v_dim))

    def projection_names(self) -> tuple[str, ...]:
        if self.params.weight_mode == "single":
            return ("q", "k", "v", "ogate_preact", "igate_preact", "fgate_preact")
        return ("qkv_opreact", "ifgate_preact")

    @classmethod
    def infer(cls, params, inputs):
        D = cls.expect_features(inputs)
        for what, fld, factor in (("qk", "qk_dim_factor", params.qk_dim_factor), ("v", "v_dim_factor", params.v_dim_factor)):
            width = int(D * factor)
            if width == 0:
                raise ShapeError(f"{what} dim is 0 (= int({D} x {fld} {factor})); it must be a positive multiple of "
                                 f"num_heads {params.num_heads}", field=fld)
            if width % params.num_heads:
                raise ShapeError(f"{what} dim {width} (= {D} x {fld} {factor}) is not divisible by "
                                 f"num_heads {params.num_heads}", field="num_heads")
        return TensorType.features(D)

    @property
    def head_dims(self) -> tuple[int, int]:
        nh = self.local_heads
        return self.qk_dim // nh, self.v_dim // nh

    @property
    def local_heads(self) -> int:
        """Heads computed here: all of them, or this rank's share under head parallelism."""
        return getattr(self, "_local_heads", None) or self.params.num_heads

    def init_state(self, batch_size: int):
        nh = self.local_heads
        dk, dv = self.head_dims
        return (mx.zeros((batch_size, nh, dk, dv), dtype=mx.float32), mx.zeros((batch_size, nh, dk), dtype=mx.float32),
                mx.zeros((batch_size, nh), dtype=mx.float32))

    def forward(self, inputs, state, ctx):
        x = inputs[0]
        B, S, _ = x.shape
        p = self.params
        nh = self.local_heads
        gate_names = ("igate_preact", "fgate_preact") if p.weight_mode == "single" else ("ifgate_preact",)
        outs, pending = self.project_pending(x, ctx.training, defer_bias=gate_names)
        if p.weight_mode == "single":
            q, k, v, o, i, f = outs
            bias_i, bias_f = pending.get("igate_preact"), pending.get("fgate_preact")
        else:
            qkvo, ifg = outs
            a, b2, c = self.qk_dim, 2 * self.qk_dim, 2 * self.qk_dim + self.v_dim
            q, k, v, o = qkvo[..., :a], qkvo[..., a:b2], qkvo[..., b2:c], qkvo[..., c:]
            i, f = ifg[..., :nh], ifg[..., nh:]
            both = pending.get("ifgate_preact")
            bias_i, bias_f = (None, None) if both is None else (both[:nh], both[nh:])
        kernel = ctx.kernel
        if kernel is None:
            from xlstm_metal.kernels import current_device, select_kernel

            kernel = select_kernel("mlstm", "step" if S == 1 else "chunkwise", device=current_device(),
                                   dtype=str(x.dtype).split(".")[-1], head_dims=self.head_dims, training=ctx.training)
        extra = {}
        if kernel.caps_gates:  # the kernel adds the gates' biases and caps them itself: no launches for either
            extra = {"gate_soft_cap": p.gate_soft_cap, "gate_bias": None if bias_i is None else (bias_i, bias_f)}
        else:
            if bias_i is not None:
                i, f = i + bias_i, f + bias_f
            i, f = soft_cap(i, p.gate_soft_cap), soft_cap(f, p.gate_soft_cap)

        def heads(t):
            return t.reshape(B, S, nh, -1).transpose(0, 2, 1, 3)

        h, new_state = kernel.fn(heads(q), heads(k), heads(v), i.transpose(0, 2, 1), f.transpose(0, 2, 1), state,
                                 chunk_size=ctx.chunk_size or 64, eps=p.eps, mask=ctx.mask, **extra)
        weight, bias = self.multihead_norm.weight, self.multihead_norm.get("bias")
        if p.norm_reduction_force_float32:  # per-head norm and output gate: one kernel where a fused one runs
            gated = ctx.aux_kernel("head_norm_gate", x.dtype).fn(h, o, weight, bias, p.norm_eps)
        else:
            gated = sigmoid_gate(o, multihead_layer_norm(h.transpose(0, 2, 1, 3), weight, bias, p.norm_eps, False))
        return tp_reduce(self, apply_linear(self.out_proj, gated)), new_state
