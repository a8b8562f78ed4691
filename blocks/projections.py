"""Input projections that read the same ``x``, computed as one matrix product (inference).

An mLSTM layer projects its input six ways (``q``, ``k``, ``v``, ``ogate_preact`` and the two
``num_heads``-row gates), a SwiGLU FFN two ways; at batch-1 decoding every projection is a
kernel launch of its own. ``merge_projections()`` concatenates a block's projection weights
along the output dimension into one matrix (and one bias), and the block's forward then does one
matmul and slices the result.

Design — merged storage, official names as views:

- The checkpoint names stay the parameters: after merging, ``q.weight`` etc. are *views* (row
  slices, no copy) of the merged matrix, so ``parameters()``, saving, strict loading, sharding
  and quantization see exactly the official single-mode keys and shapes, and no weight is held
  twice. The merged arrays live under the private key ``_merged`` of the block: outside
  ``parameters()``, but inside ``module.state``, so a compiled function that captures the
  model's state (the runner's decode step) reads them as inputs, not as baked-in constants.
- Merging is an explicit inference step: ``xLSTMRunner`` merges after its weights are in place
  (``from_spec``, ``from_pretrained``, ``quantize``, ``shard_heads``); blocks are built
  unmerged, and training (``Trainer``, MAD) un-merges, because gradients and optimizer updates
  belong to the official arrays.
- Any replacement of a projection's array or module un-merges the block at once (``update``,
  ``load_weights``, an optimizer step, ``value_and_grad``'s tracers, ``nn.quantize``): the
  projections are :class:`Linear` / :class:`QuantizedLinear`, whose ``__setitem__`` tells their
  block, and the block's ``__setitem__`` watches its projection modules. So a stale merged matrix
  is never used, whatever code changes the weights; the forward falls back to one matmul per
  projection until ``merge_projections()`` is called again.
- Projections merge in groups of alike layers: plain layers of one dtype, or quantized layers
  with the same group size, bits and mode (their packed weights, scales and biases concatenate
  along rows). A layer that fits no group (e.g. tiny gates left unquantized) keeps its own matmul.
  Biases are not merged: each layer's own ``bias`` is added to its slice of the product (that add
  fuses with what follows it). A product with a bias leaves MLX's batch-1 gemv for cuBLASLt's bias
  epilogue, 1.29x slower at the 7B input projections' shape on an H200
  (``benchmarks/results/h200_run7_gemv.json``); and a block may take some biases back unadded
  (``project_pending``): the mLSTM layer hands its gates' biases to a fused step kernel that adds
  them itself.

Merging evaluates one block at a time and drops the originals before the next block, so peak
memory grows by one block's projections, not by the model.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn


def _unmerge_owner(layer) -> None:
    ref = layer.__dict__.get("_merge_owner")
    owner = ref() if ref is not None else None
    if owner is not None:
        owner.unmerge_projections()


class Linear(nn.Linear):
    """``nn.Linear`` that un-merges its block when one of its arrays is replaced."""

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        _unmerge_owner(self)

    def to_quantized(self, group_size: int | None = None, bits: int | None = None, mode: str = "affine", **kw):
        if kw.get("quantize_input"):
            return super().to_quantized(group_size, bits, mode, **kw)
        return QuantizedLinear.from_linear(self, group_size, bits, mode)


class QuantizedLinear(nn.QuantizedLinear):
    """``nn.QuantizedLinear`` that un-merges its block when one of its arrays is replaced."""

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        _unmerge_owner(self)


def projection(d_in: int, d_out: int, bias: bool, std: float) -> Linear:
    """A projection layer (small-init normal weight, zero bias) that can take part in a merge."""
    layer = Linear(d_in, d_out, bias=bias)
    layer.weight = mx.random.normal((d_out, d_in)) * std
    if bias:
        layer.bias = mx.zeros((d_out,))
    return layer


@dataclass(frozen=True)
class _Group:
    names: tuple[str, ...]
    bounds: tuple[tuple[int, int], ...]  # each member's rows [a, b) of the merged output
    quant: dict | None  # {"group_size", "bits", "mode"} for a quantized group


def _kind(layer):
    """What a layer can merge with; None: it cannot merge (it would not report a change of its arrays)."""
    if isinstance(layer, QuantizedLinear):
        return ("quantized", layer.group_size, layer.bits, layer.mode, layer["scales"].dtype,
                layer.get("biases") is not None)
    if isinstance(layer, Linear):
        return ("plain", layer["weight"].dtype)
    return None


_FIELDS = ("weight", "scales", "biases")


class MergeableProjections:
    """Mixin for a block whose ``projection_names()`` layers all read the block's input.

    ``project(x, training)`` returns their outputs in that order: from the merged matrices when
    merged (and not training), else one layer call each.
    """

    def projection_names(self) -> tuple[str, ...]:
        raise NotImplementedError

    @property
    def projections_merged(self) -> bool:
        return bool(self.__dict__.get("_merge_groups"))

    def __setitem__(self, key, value):
        if self.__dict__.get("_merge_groups") and key in self.projection_names():  # a projection replaced (nn.quantize)
            self.unmerge_projections()
        super().__setitem__(key, value)

    def merge_projections(self) -> bool:
        """Merge alike projections (see the module docstring); True when something was merged.

        Runs eagerly (it evaluates the merged arrays); call it outside ``mx.compile``/``grad``.
        A merged block is current (any change un-merges it), so merging it again does nothing.
        """
        if self.projections_merged:
            return True
        names = self.projection_names()
        by_kind: dict = {}
        for n in names:
            kind = _kind(self[n])
            if kind is not None:
                by_kind.setdefault(kind, []).append(n)
        groups, merged = [], []
        for kind, members in by_kind.items():
            if len(members) < 2:
                continue
            layers = [self[n] for n in members]
            quantized = kind[0] == "quantized"
            arrays = {f: mx.concatenate([layer[f] for layer in layers]) for f in _FIELDS if f in layers[0]}
            mx.eval(arrays)
            bounds, a = [], 0
            for layer in layers:
                b = a + layer["weight"].shape[0]
                views = {f: arrays[f][a:b] for f in arrays if f in layer}
                mx.eval(views)
                for f, view in views.items():  # the originals are released here, layer by layer
                    dict.__setitem__(layer, f, view)
                bounds.append((a, b))
                a = b
            quant = None
            if quantized:
                quant = {"group_size": layers[0].group_size, "bits": layers[0].bits, "mode": layers[0].mode}
            groups.append(_Group(tuple(members), tuple(bounds), quant))
            merged.append(arrays)
        if not groups:
            return False
        self["_merged"] = merged
        object.__setattr__(self, "_merge_groups", tuple(groups))
        ref = weakref.ref(self)
        for g in groups:
            for n in g.names:
                object.__setattr__(self[n], "_merge_owner", ref)
        return True

    def unmerge_projections(self) -> bool:
        """Back to one layer per projection (their arrays stay views: nothing is copied); True if it was merged."""
        groups = self.__dict__.get("_merge_groups")
        if not groups:
            return False
        object.__setattr__(self, "_merge_groups", ())
        for g in groups:
            for n in g.names:
                layer = self.get(n)
                if layer is not None:
                    object.__setattr__(layer, "_merge_owner", None)
        dict.pop(self, "_merged", None)
        return True

    def project(self, x: mx.array, training: bool = False) -> list[mx.array]:
        return self.project_pending(x, training)[0]

    def project_pending(self, x: mx.array, training: bool = False, defer_bias: tuple[str, ...] = ()):
        """``(outputs, pending)``: the projections' outputs in ``projection_names()`` order, and for the layers
        named in ``defer_bias`` whose output came from a merged product, their bias, not yet added
        (``pending[name]``); the caller adds it (or has a kernel add it). Unmerged layers add their own."""
        names = self.projection_names()
        groups = self.__dict__.get("_merge_groups")
        if not groups or training:
            return [self[n](x) for n in names], {}
        out: dict[str, mx.array] = {}
        pending: dict[str, mx.array] = {}
        for g, arrays in zip(groups, self["_merged"]):
            if g.quant is None:
                from xlstm_metal.kernels import gemv
                y = gemv.matmul(x, arrays["weight"]) if gemv.enabled() else x @ arrays["weight"].T
            else:
                y = mx.quantized_matmul(x, arrays["weight"], scales=arrays["scales"], biases=arrays.get("biases"),
                                        transpose=True, **g.quant)
            for n, (a, b) in zip(g.names, g.bounds):
                out[n] = y[..., a:b]
                if "bias" in self[n]:  # as the layer adds it (the add fuses with what follows)
                    if n in defer_bias:
                        pending[n] = self[n]["bias"]
                    else:
                        out[n] = out[n] + self[n]["bias"]
        return [out[n] if n in out else self[n](x) for n in names], pending
