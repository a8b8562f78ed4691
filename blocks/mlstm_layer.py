"""The xLSTM paper's mLSTM layer (official ``xlstm.mLSTMLayer``): up-projection into an mLSTM branch and a
gate branch z, causal conv + SiLU on the branch, headwise q/k (from the conv output) and v (from the
branch before the conv), the mLSTM cell (gates from q|k|v, per-head group norm), a learnable skip from the
conv output, the SiLU(z) output gate and the down-projection. Parameter names are the official keys.

The cell is the kernel the plan chose (its math is the official one: stabilised exponential gating,
normaliser ``max(|q.n|, exp(-m)) + eps``; q is scaled by 1/sqrt(head dim) where the official scales k).
"""
from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
from pydantic import Field

from .base import Block, BlockParams, ShapeError, TensorType, register_block
from .causal_conv1d import causal_conv
from .headwise import HeadwiseLinear
from .layer_norm import norm_scale
from .ops import linear, round_up_to_multiple, small_init_std
from xlstm_metal.kernels.ops import multihead_layer_norm



class MLSTMLayerParams(BlockParams):
    num_heads: int = Field(4, gt=0, description="Heads of the mLSTM cell (each with its own C, n, m state).")
    proj_factor: float = Field(2.0, gt=0, description="Inner width = dim * proj_factor, rounded up.")
    round_up_to: int = Field(64, gt=0, description="Round the inner width up to a multiple of this.")
    conv1d_kernel_size: int = Field(4, ge=1, description="Taps of the causal convolution on the mLSTM branch.")
    qkv_proj_blocksize: int = Field(4, gt=0, description="Block size of the block-diagonal q/k/v projections.")
    use_bias: bool = Field(False, description="Biases on the up/down and q/k/v projections.")
    eps: float = Field(1e-6, gt=0, description="Epsilon of the cell's denominator max(|q.n|, exp(-m)) + eps.")
    norm_eps: float = Field(1e-5, gt=0, description="Epsilon of the per-head group norm.")


def inner_width(dim: int, p) -> int:
    return round_up_to_multiple(dim * p.proj_factor, p.round_up_to)


@register_block
class MLSTMLayer(Block):
    type_name = "mlstm_layer"
    Params = MLSTMLayerParams
    stateful = True
    kernel_family = "mlstm"
    summary = "xLSTM paper mLSTM layer: up-projection, conv, headwise q/k/v, mLSTM cell, skip, SiLU gate."

    def __init__(self, params: MLSTMLayerParams, inputs):
        super().__init__(params, inputs)
        D = inputs[0].dim
        inner = self.inner = inner_width(D, params)
        bias, std = params.use_bias, small_init_std(D)
        self.proj_up = linear(D, 2 * inner, bias, std)
        blocks = inner // params.qkv_proj_blocksize
        self.q_proj, self.k_proj, self.v_proj = (HeadwiseLinear(inner, blocks, bias, std) for _ in range(3))
        self.conv1d = nn.Module()
        self.conv1d.conv = nn.Module()  # official keys conv1d.conv.weight [inner, 1, K] and .bias
        K = params.conv1d_kernel_size
        self.conv1d.conv.weight = mx.random.normal((inner, 1, K)) * K ** -0.5
        self.conv1d.conv.bias = mx.zeros((inner,))
        nh = params.num_heads
        self.mlstm_cell = nn.Module()
        self.mlstm_cell.igate = nn.Linear(3 * inner, nh)
        self.mlstm_cell.igate.weight = mx.zeros((nh, 3 * inner))
        self.mlstm_cell.igate.bias = mx.random.normal((nh,)) * 0.1
        self.mlstm_cell.fgate = nn.Linear(3 * inner, nh)
        self.mlstm_cell.fgate.weight = mx.zeros((nh, 3 * inner))
        self.mlstm_cell.fgate.bias = mx.linspace(3.0, 6.0, nh)
        self.mlstm_cell.outnorm = nn.Module()
        self.mlstm_cell.outnorm.weight = mx.zeros((inner,))  # residual: the scale is 1 + weight
        self.learnable_skip = mx.ones((inner,))
        self.proj_down = linear(inner, D, bias, small_init_std(inner))

    @classmethod
    def infer(cls, params, inputs):
        D = cls.expect_features(inputs)
        inner = inner_width(D, params)
        for fld in ("num_heads", "qkv_proj_blocksize"):
            if inner == 0 or inner % getattr(params, fld):
                raise ShapeError(f"inner width {inner} (= {D} x proj_factor {params.proj_factor}, rounded up to a "
                                 f"multiple of {params.round_up_to}) is not divisible by {fld} "
                                 f"{getattr(params, fld)}", field=fld)
        return TensorType.features(D)

    @property
    def head_dims(self) -> tuple[int, int]:
        dh = self.inner // self.params.num_heads
        return dh, dh

    def init_state(self, batch_size: int):
        nh, (dh, _) = self.params.num_heads, self.head_dims
        K = self.params.conv1d_kernel_size
        return (mx.zeros((batch_size, K - 1, self.inner), mx.float32), mx.zeros((batch_size, nh, dh, dh), mx.float32),
                mx.zeros((batch_size, nh, dh), mx.float32), mx.zeros((batch_size, nh), mx.float32))

    def forward(self, inputs, state, ctx):
        x = inputs[0]
        B, S, _ = x.shape
        nh = self.params.num_heads
        conv_prev, *cell_state = state if state is not None else self.init_state(B)
        branch, z = mx.split(self.proj_up(x), [self.inner], axis=-1)
        conv = self.conv1d.conv
        conv_out, conv_state = causal_conv(branch, conv_prev, conv.weight[:, 0, :], conv.bias, ctx.mask)
        conv_act = nn.silu(conv_out)
        q, k, v = self.q_proj(conv_act), self.k_proj(conv_act), self.v_proj(branch)
        gate_in = mx.concatenate([q, k, v], axis=-1)
        i, f = self.mlstm_cell.igate(gate_in), self.mlstm_cell.fgate(gate_in)
        kernel = ctx.kernel
        if kernel is None:
            kernel = ctx.select("mlstm", "step" if S == 1 else "chunkwise", x.dtype, self.head_dims)
        extra = {"gate_soft_cap": None, "gate_bias": (mx.zeros((nh,)), mx.zeros((nh,)))} if kernel.caps_gates else {}

        def heads(t):
            return t.reshape(B, S, nh, -1).transpose(0, 2, 1, 3)

        h, cell_state = kernel.fn(heads(q), heads(k), heads(v), i.transpose(0, 2, 1), f.transpose(0, 2, 1),
                                  tuple(cell_state), chunk_size=ctx.chunk_size or 64, eps=self.params.eps,
                                  mask=ctx.mask, **extra)
        h = multihead_layer_norm(h.transpose(0, 2, 1, 3), norm_scale(self.mlstm_cell.outnorm.weight, True), None,
                                 self.params.norm_eps)
        out = self.proj_down((h + self.learnable_skip * conv_act) * nn.silu(z))
        return out, conv_state + tuple(cell_state)
