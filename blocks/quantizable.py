"""Quantisation for blocks that own a bare weight matrix (embedding, lm_head).

``mlx.nn.quantize`` calls ``to_quantized`` on leaf modules; these blocks quantise their ``weight``
in place (keeping the checkpoint key ``<node>.weight`` plus ``.scales``/``.biases``), exactly as
``nn.QuantizedLinear`` / ``nn.QuantizedEmbedding`` lay them out.
"""
from __future__ import annotations

import mlx.core as mx

from xlstm_metal.kernels.quantized import quantized_matmul_t


class QuantizableWeight:
    _quant: dict | None = None  # mx.quantize's group_size, bits and mode once quantised

    def to_quantized(self, group_size: int = 64, bits: int = 4, mode: str = "affine", **_):
        if self.weight.shape[-1] % group_size:
            return self  # rows not divisible into groups: keep full precision
        wq, scales, *rest = mx.quantize(self.weight, group_size=group_size, bits=bits, mode=mode)
        self.weight, self.scales = wq, scales
        if rest and rest[0] is not None:
            self.biases = rest[0]
        object.__setattr__(self, "_quant", dict(group_size=group_size, bits=bits, mode=mode))
        return self

    def dequantize_weight(self) -> None:
        """Back to a full-precision ``weight`` (the dequantized values)."""
        if self._quant is None:
            return
        self.weight = mx.dequantize(self.weight, self.scales, self.get("biases"), **self._quant)
        for name in ("scales", "biases"):
            if name in self:
                del self[name]
        object.__setattr__(self, "_quant", None)

    def matmul_weight_t(self, x: mx.array) -> mx.array:
        """``x @ weight.T`` for a plain or quantised weight."""
        if self._quant is None:
            return x @ self.weight.T
        return quantized_matmul_t(x, self.weight, self.scales, self.get("biases"), **self._quant)

    def weight_rows(self, ids: mx.array) -> mx.array:
        """``weight[ids]`` for a plain or quantised weight (an embedding lookup)."""
        if self._quant is None:
            return self.weight[ids]
        b = self.get("biases")
        return mx.dequantize(self.weight[ids], self.scales[ids], b[ids] if b is not None else None, **self._quant)
