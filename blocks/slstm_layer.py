"""The xLSTM paper's sLSTM layer (official ``xlstm.sLSTMLayer``): optional causal conv + SiLU feeding the
input and forget gates, headwise gate projections, the sLSTM cell (exponential input gate, normaliser and
stabiliser states, block-diagonal recurrent kernel) and a per-head group norm. One step per token.

Parameter names are the official keys; the cell's ``recurrent_kernel`` and ``bias`` are its
``_recurrent_kernel_`` / ``_bias_`` in the layout of the ``backend`` the checkpoint was written with.
As in the official layer, the gate fed first to the cell comes from ``fgate`` and the second from ``igate``.
"""
from __future__ import annotations

from typing import Literal

import mlx.core as mx
import mlx.nn as nn
from pydantic import Field

from .base import Block, BlockParams, register_block
from .causal_conv1d import causal_conv
from .headwise import HeadwiseLinear
from .layer_norm import norm_scale
from .ops import small_init_std
from xlstm_metal.kernels.ops import multihead_layer_norm


class SLSTMLayerParams(BlockParams):
    num_heads: int = Field(4, gt=0, description="Heads; gates and recurrence are block-diagonal per head.")
    conv1d_kernel_size: int = Field(4, ge=0, description="Taps of the causal conv feeding i/f gates; 0: none.")
    group_norm_weight: bool = Field(True, description="Learnable scale of the per-head group norm.")
    backend: Literal["vanilla", "cuda"] = Field("vanilla", description="Layout of the stored recurrent kernel and "
                                                "bias: that of the official backend the weights come from.")
    norm_eps: float = Field(1e-5, gt=0, description="Epsilon of the per-head group norm.")
    block_idx: int = Field(0, ge=0, description="Position in the stack (the powerlaw forget-bias init).")
    num_blocks: int = Field(1, gt=0, description="Blocks in the stack (the powerlaw forget-bias init).")


def powerlaw_forget_bias(head_dim: int, block_idx: int, num_blocks: int) -> mx.array:
    """The official "powerlaw_blockdependent" forget-gate bias of one head: from 5 down to -7, steeper deeper."""
    ratio = block_idx / (num_blocks - 1) if num_blocks > 1 else 0.0
    return -(-5.0 + 12.0 * (mx.arange(head_dim) / max(head_dim - 1, 1)) ** (0.3 + 1.3 * ratio))


@register_block
class SLSTMLayer(Block):
    type_name = "slstm_layer"
    Params = SLSTMLayerParams
    stateful = True
    summary = "xLSTM paper sLSTM layer: conv, headwise gates, sLSTM cell with recurrence, per-head group norm."

    def __init__(self, params: SLSTMLayerParams, inputs):
        super().__init__(params, inputs)
        D, nh, K = inputs[0].dim, params.num_heads, params.conv1d_kernel_size
        dh = D // nh
        if K:
            self.conv1d = nn.Module()
            self.conv1d.conv = nn.Module()  # official keys conv1d.conv.weight [D, 1, K] and .bias
            self.conv1d.conv.weight = mx.random.normal((D, 1, K)) * K ** -0.5
            self.conv1d.conv.bias = mx.zeros((D,))
        for gate in ("fgate", "igate", "zgate", "ogate"):
            setattr(self, gate, HeadwiseLinear(D, nh, False, small_init_std(D)))
        self.slstm_cell = nn.Module()
        bias = mx.zeros((4, nh, dh))
        bias[1] = mx.broadcast_to(powerlaw_forget_bias(dh, params.block_idx, params.num_blocks), (nh, dh))
        recurrent = mx.zeros((nh, dh, 4 * dh))  # [head, from, gate * to]: the cuda layout
        if params.backend == "vanilla":
            bias, recurrent = bias.reshape(-1), recurrent.swapaxes(1, 2)
        else:
            bias = bias.transpose(1, 0, 2).reshape(-1)
        self.slstm_cell.recurrent_kernel, self.slstm_cell.bias = recurrent, bias
        if params.group_norm_weight:
            self.group_norm = nn.Module()
            self.group_norm.weight = mx.zeros((D,))  # residual: the scale is 1 + weight

    @classmethod
    def infer(cls, params, inputs):
        return cls.expect_heads(inputs, params.num_heads)

    def init_state(self, batch_size: int):
        D, K = self._input_types[0].dim, self.params.conv1d_kernel_size
        z = mx.zeros((batch_size, D), mx.float32)
        return (mx.zeros((batch_size, max(K - 1, 0), D), mx.float32), z, z, z, z)  # conv, y, c, n, m

    def cell_weights(self) -> tuple[mx.array, mx.array]:
        """The recurrent kernel as [head, from, gate * to] and the bias as [gate, head, to], float32."""
        nh = self.params.num_heads
        R, b = self.slstm_cell.recurrent_kernel.astype(mx.float32), self.slstm_cell.bias.astype(mx.float32)
        if self.params.backend == "vanilla":
            return R.swapaxes(1, 2), b.reshape(4, nh, -1)
        return R, b.reshape(nh, 4, -1).transpose(1, 0, 2)

    def forward(self, inputs, state, ctx):
        x = inputs[0]
        B, S, D = x.shape
        nh = self.params.num_heads
        conv_prev, y, c, n, m = state if state is not None else self.init_state(B)
        if self.params.conv1d_kernel_size:
            conv = self.conv1d.conv
            conv_out, (conv_prev,) = causal_conv(x, conv_prev, conv.weight[:, 0, :], conv.bias, ctx.mask)
            x_conv = nn.silu(conv_out)
        else:
            x_conv = x
        # gate pre-activations [B, S, 4, D] in the cell's order; the official layer feeds fgate's output first
        wx = mx.stack([self.fgate(x_conv), self.igate(x_conv), self.zgate(x), self.ogate(x)], axis=2)
        R, b = self.cell_weights()
        wx = wx.astype(mx.float32) + b.reshape(4, D)
        keep = ctx.mask.astype(mx.bool_) if ctx.mask is not None else None
        outs = []
        for t in range(S):
            ry = (y.reshape(B, nh, 1, -1) @ R).reshape(B, nh, 4, -1).transpose(0, 2, 1, 3).reshape(B, 4, D)
            i_raw, f_raw, z_raw, o_raw = (a[:, 0] for a in mx.split(wx[:, t] + ry, 4, axis=1))
            log_f_m = m + nn.log_sigmoid(f_raw)
            fresh = mx.all(n == 0.0, axis=-1, keepdims=True)  # an empty state takes the input gate as stabiliser
            m_new = mx.where(fresh, i_raw, mx.maximum(i_raw, log_f_m))
            i_act = mx.minimum(mx.exp(i_raw - m_new), 1.0)
            f_act = mx.minimum(mx.exp(log_f_m - m_new), 1.0)
            c_new = f_act * c + i_act * mx.tanh(z_raw)
            n_new = f_act * n + i_act
            y_new = mx.sigmoid(o_raw) * c_new / n_new
            if keep is not None:
                k_t = keep[:, t:t + 1]
                y_new, c_new, n_new, m_new = (mx.where(k_t, a, old) for a, old in
                                              ((y_new, y), (c_new, c), (n_new, n), (m_new, m)))
                outs.append(mx.where(k_t, y_new, 0.0))
            else:
                outs.append(y_new)
            y, c, n, m = y_new, c_new, n_new, m_new
        h = mx.stack(outs, axis=1) if outs else mx.zeros((B, 0, D), mx.float32)
        weight = norm_scale(self.group_norm.weight if self.params.group_norm_weight else None, True)
        out = multihead_layer_norm(h.reshape(B, S, nh, D // nh), weight, None, self.params.norm_eps)
        return out.astype(x.dtype), (conv_prev, y, c, n, m)
