"""The sLSTM layer (xLSTM paper): scalar memory with exponential input gate, normaliser and stabiliser
states, and block-diagonal recurrent weights per head. Inherently sequential: one step per token.
"""
from __future__ import annotations

import mlx.core as mx
from pydantic import Field

from .base import Block, BlockParams, register_block
from .ops import linear, small_init_std


class SLSTMParams(BlockParams):
    num_heads: int = Field(gt=0, description="Heads; the recurrent matrix is block-diagonal with one block per head.")
    forget_bias_init: float = Field(3.0, description="Initial forget-gate bias (remember by default).")
    eps: float = Field(1e-6, gt=0, description="Added to the normaliser before dividing.")


@register_block
class SLSTM(Block):
    type_name = "slstm"
    Params = SLSTMParams
    stateful = True
    summary = "sLSTM: exponential gating with normaliser/stabiliser, per-head recurrence."

    def __init__(self, params: SLSTMParams, inputs):
        super().__init__(params, inputs)
        D = inputs[0].dim
        nh = params.num_heads
        hd = D // nh
        self.gates = linear(D, 4 * D, True, small_init_std(D))  # i, f, z, o pre-activations from x
        self.gates.bias = mx.concatenate([mx.zeros((D,)), mx.full((D,), params.forget_bias_init), mx.zeros((2 * D,))])
        self.recurrent = mx.random.normal((nh, hd, 4 * hd)) * small_init_std(hd)  # per head: h -> i, f, z, o

    @classmethod
    def infer(cls, params, inputs):
        return cls.expect_heads(inputs, params.num_heads)

    def init_state(self, batch_size: int):
        D = self._input_types[0].dim
        z = mx.zeros((batch_size, D), mx.float32)
        return (z, z, z, z)  # c, n, m, h

    def forward(self, inputs, state, ctx):
        x = inputs[0]
        B, S, D = x.shape
        nh = self.params.num_heads
        hd = D // nh
        c, n, m, h = state if state is not None else self.init_state(B)
        pre = self.gates(x).astype(mx.float32)  # [B,S,4D] laid out per head as (i,f,z,o) blocks of hd
        pre = pre.reshape(B, S, 4, nh, hd)
        R = self.recurrent.astype(mx.float32)
        keep = ctx.mask.astype(mx.bool_) if ctx.mask is not None else None
        outs = []
        for t in range(S):
            rec = (h.reshape(B, nh, 1, hd) @ R).reshape(B, nh, 4, hd).transpose(0, 2, 1, 3)  # [B,4,nh,hd]
            g = pre[:, t] + rec
            i_raw, f_raw, z_raw, o_raw = (g[:, j].reshape(B, D) for j in range(4))
            log_f = -mx.logaddexp(mx.array(0.0), -f_raw)
            m_new = mx.maximum(log_f + m, i_raw)
            i_act, f_act = mx.exp(i_raw - m_new), mx.exp(log_f + m - m_new)
            c_new = f_act * c + i_act * mx.tanh(z_raw)
            n_new = f_act * n + i_act
            h_new = mx.sigmoid(o_raw) * c_new / (n_new + self.params.eps)
            if keep is not None:
                k_t = keep[:, t:t + 1]
                c_new, n_new, m_new, h_new = (mx.where(k_t, a, b)
                                              for a, b in ((c_new, c), (n_new, n), (m_new, m), (h_new, h)))
                outs.append(mx.where(k_t, h_new, 0.0))
            else:
                outs.append(h_new)
            c, n, m, h = c_new, n_new, m_new, h_new
        return mx.stack(outs, axis=1).astype(x.dtype), (c, n, m, h)
