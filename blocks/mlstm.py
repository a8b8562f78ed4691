"""The mLSTM layer of xLSTMLarge: projections, soft-capped gates, the mLSTM cell, per-head norm, output gate.

The cell is the kernel the plan chose (``ctx.kernel``). The six input projections are one parameter,
``proj_in`` (rows q | k | v | ogate | igate | fgate: one matmul), with the gates' biases in ``gate_bias``
(i | f) and, with ``use_bias``, the others' in ``qkvo_bias``; ``xlstm_metal.checkpoint.sanitize`` maps
the official names to these.
"""
from __future__ import annotations

from typing import Literal

import mlx.core as mx
import mlx.nn as nn
from pydantic import Field

from .base import Block, BlockParams, ShapeError, TensorType, register_block, tp_reduce
from .multihead_layer_norm import multihead_layer_norm
from .ops import add_norm_affine, linear, sigmoid_gate, small_init_std, soft_cap


class MLSTMParams(BlockParams):
    num_heads: int = Field(gt=0, description="Number of mLSTM heads (each with its own C, n, m state).")
    qk_dim_factor: float = Field(0.5, gt=0, description="Query/key width = int(dim * qk_dim_factor).")
    v_dim_factor: float = Field(1.0, gt=0, description="Value width = int(dim * v_dim_factor).")
    gate_soft_cap: float | None = Field(15.0, gt=0,
                                        description="Input/forget gate pre-activations are soft-capped to this.")
    norm_eps: float = Field(1e-6, gt=0, description="Epsilon of the per-head layer norm.")
    eps: float = Field(1e-6, gt=0, description="Epsilon of the cell's denominator max(|q·n|, exp(-m)) + eps.")
    use_bias: bool = Field(False, description="Biases on q/k/v/o/out projections (gates always have biases).")
    weight_mode: Literal["single", "fused"] = Field("single", description="Checkpoint names: single: separate "
                                                    "q,k,v,o,i,f weights; fused: qkv_opreact + ifgate_preact.")
    norm_reduction_force_float32: bool = Field(True, description="Per-head norm reduces in float32.")


@register_block
class MLSTM(Block):
    type_name = "mlstm"
    Params = MLSTMParams
    stateful = True
    kernel_family = "mlstm"
    aux_kernels = ("head_norm_gate",)
    summary = "mLSTM layer (matrix memory, exponential gating) with its recurrent state."

    def __init__(self, params: MLSTMParams, inputs):
        super().__init__(params, inputs)
        D = inputs[0].dim
        nh = self.local_heads = params.num_heads  # heads computed here: this rank's share under head parallelism
        self.qk_dim, self.v_dim = int(D * params.qk_dim_factor), int(D * params.v_dim_factor)
        self.proj_in = linear(D, sum(self.proj_in_rows), False, small_init_std(D))
        self.gate_bias = mx.concatenate([mx.full((nh,), -10.0), mx.linspace(3.0, 6.0, nh)])
        if params.use_bias:
            self.qkvo_bias = mx.zeros((sum(self.proj_in_rows[:4]),))
        self.multihead_norm = nn.Module()  # holds ``multihead_norm.weight`` (and bias), the official keys
        add_norm_affine(self.multihead_norm, self.v_dim, True, params.use_bias)
        self.out_proj = linear(self.v_dim, D, params.use_bias, small_init_std(self.v_dim))

    @classmethod
    def infer(cls, params, inputs):
        D = cls.expect_features(inputs)
        for what, fld in (("qk", "qk_dim_factor"), ("v", "v_dim_factor")):
            factor = getattr(params, fld)
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
    def proj_in_rows(self) -> tuple[int, ...]:
        """Rows of q, k, v, ogate, igate, fgate in ``proj_in`` (this rank's under head parallelism)."""
        nh = self.local_heads
        return self.qk_dim, self.qk_dim, self.v_dim, self.v_dim, nh, nh

    def init_state(self, batch_size: int):
        nh = self.local_heads
        dk, dv = self.head_dims
        return (mx.zeros((batch_size, nh, dk, dv), dtype=mx.float32),
                mx.zeros((batch_size, nh, dk), dtype=mx.float32), mx.zeros((batch_size, nh), dtype=mx.float32))

    def forward(self, inputs, state, ctx):
        x = inputs[0]
        B, S, _ = x.shape
        p = self.params
        nh, qk, vd = self.local_heads, self.qk_dim, self.v_dim
        qkvo, i, f = mx.split(self.proj_in(x), [2 * qk + 2 * vd, 2 * qk + 2 * vd + nh], axis=-1)
        if "qkvo_bias" in self:
            qkvo = qkvo + self.qkvo_bias
        q, k, v, o = mx.split(qkvo, [qk, 2 * qk, 2 * qk + vd], axis=-1)
        bias_i, bias_f = self.gate_bias[:nh], self.gate_bias[nh:]
        kernel = ctx.kernel
        if kernel is None:
            kernel = ctx.select("mlstm", "step" if S == 1 else "chunkwise", x.dtype, self.head_dims)
        extra = {}
        if kernel.caps_gates:  # the kernel adds the gates' biases and caps them itself: no launches for either
            extra = {"gate_soft_cap": p.gate_soft_cap, "gate_bias": (bias_i, bias_f)}
        else:
            i, f = soft_cap(i + bias_i, p.gate_soft_cap), soft_cap(f + bias_f, p.gate_soft_cap)

        def heads(t):
            return t.reshape(B, S, nh, -1).transpose(0, 2, 1, 3)

        h, new_state = kernel.fn(heads(q), heads(k), heads(v), i.transpose(0, 2, 1), f.transpose(0, 2, 1), state,
                                 chunk_size=ctx.chunk_size or 64, eps=p.eps, mask=ctx.mask, **extra)
        weight, bias = self.multihead_norm.weight, self.multihead_norm.get("bias")
        if p.norm_reduction_force_float32:  # per-head norm and output gate: one kernel where a fused one runs
            gated = ctx.aux_kernel("head_norm_gate", x.dtype).fn(h, o, weight, bias, p.norm_eps)
        else:
            gated = sigmoid_gate(o, multihead_layer_norm(h.transpose(0, 2, 1, 3), weight, bias, p.norm_eps, False))
        return tp_reduce(self, self.out_proj(gated)), new_state
