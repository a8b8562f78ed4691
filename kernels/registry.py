"""Kernel registry: a family (``"mlstm"``) has forms (``"chunkwise"``, ...), each with several implementations
(native MLX ops, fused CUDA or Metal); the scheduler picks the highest-priority one that supports the call."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable

import mlx.core as mx


@dataclass(frozen=True)
class KernelInfo:
    family: str
    form: str
    name: str
    fn: Callable = field(compare=False, repr=False)
    backend: str = "native"  # "native" | "cuda" | "metal"
    devices: frozenset = frozenset({"cpu", "gpu"})
    dtypes: frozenset = frozenset({"float32", "float16", "bfloat16"})
    head_dim_multiple: int | None = None  # head dims must be multiples of this
    max_chunks: int | None = None  # the most chunks one call takes: the plan cuts longer inputs into segments
    chunk: int | None = None  # the chunk length it works in, whatever chunk size it is given (None: that one)
    math_dtype: str = "float32"  # its inner products' operand precision: the property suite bounds it by this
    differentiable: bool = True  # has a gradient of its own (custom GPU kernels define no VJP: False)
    # without a gradient of its own: the function (same signature and outputs) whose gradient it uses
    reference: Callable | None = field(default=None, compare=False, repr=False)
    # takes raw gate pre-activations with ``gate_soft_cap=`` and ``gate_bias=`` (b_i, b_f per head), applied itself
    caps_gates: bool = False
    priority: int = 0
    is_available: Callable[[], bool] = field(default=lambda: True, compare=False, repr=False)
    doc: str = ""

    def supports(self, *, device: str, dtype: str, head_dims: tuple[int, ...] = (),
                 training: bool = False) -> str | None:
        """``None`` when this kernel applies, else the reason it does not (``training``: gradients must flow)."""
        if training and not self.differentiable:
            return "has no gradient of its own (a custom GPU kernel); training plans take one that has"
        if not self.is_available():
            return f"{self.backend} backend is not available on this machine"
        if device not in self.devices:
            return f"runs on {sorted(self.devices)}, not {device}"
        if dtype not in self.dtypes:
            return f"supports dtypes {sorted(self.dtypes)}, not {dtype}"
        if self.head_dim_multiple and any(d % self.head_dim_multiple for d in head_dims):
            return f"head dims {head_dims} are not multiples of {self.head_dim_multiple}"
        return None


_KERNELS: dict[tuple[str, str], KernelInfo] = {}


def register_kernel(info: KernelInfo) -> KernelInfo:
    """Add a kernel; one with ``differentiable=False`` gets its ``reference``'s gradient (none: an error naming it)."""
    key = (info.family, info.name)
    if not info.differentiable and not getattr(info.fn, "gradient_wrapped", False):
        from .reference_gradient import with_reference_gradient, without_gradient
        name = f"{info.family}/{info.name}"
        wrapped = (with_reference_gradient(info.fn, info.reference) if info.reference is not None
                   else without_gradient(info.fn, name))
        info = dataclasses.replace(info, fn=wrapped)
    if key in _KERNELS and _KERNELS[key] != info:
        raise ValueError(f"kernel {info.family}/{info.name} is already registered")
    _KERNELS[key] = info
    return info


def kernels(family: str | None = None, form: str | None = None) -> list[KernelInfo]:
    out = [k for k in _KERNELS.values() if (family is None or k.family == family) and (form is None or k.form == form)]
    return sorted(out, key=lambda k: (-k.priority, k.name))


def get_kernel(family: str, name: str) -> KernelInfo:
    try:
        return _KERNELS[(family, name)]
    except KeyError:
        known = ", ".join(k.name for k in kernels(family)) or "none"
        raise KeyError(f"no {family} kernel named {name!r}; registered: {known}") from None


def current_device() -> str:
    return "gpu" if mx.default_device().type == mx.DeviceType.gpu else "cpu"


def select_kernel(family: str, form: str, *, device: str, dtype: str, head_dims: tuple[int, ...] = (),
                  training: bool = False) -> KernelInfo:
    """The best kernel of ``family``/``form`` for the call (``training``: one with a gradient), else a LookupError."""
    reasons = []
    for k in kernels(family, form):
        why = k.supports(device=device, dtype=dtype, head_dims=head_dims, training=training)
        if why is None:
            return k
        reasons.append(f"{k.name}: {why}")
    detail = "; ".join(reasons) or "none registered"
    raise LookupError(f"no {family} {form} kernel applies (device={device}, dtype={dtype}"
                      f"{', training' if training else ''}): {detail}")


@dataclass(frozen=True)
class FusionRule:
    """Two graph nodes (block type names), ``first`` feeding ``then`` its only input, computed by one ``family``
    kernel (form ``"fused"``) where ``applies(first_params, then_params, first_inputs)`` returns None (else why not);
    ``run(kernel, first_block, then_block, inputs)`` returns both nodes' outputs."""
    name: str
    first: str
    then: str
    family: str
    applies: Callable = field(compare=False, repr=False)
    run: Callable = field(compare=False, repr=False)
    doc: str = ""


_FUSIONS: dict[str, FusionRule] = {}


def register_fusion(rule: FusionRule) -> FusionRule:
    if rule.name in _FUSIONS and _FUSIONS[rule.name] != rule:
        raise ValueError(f"fusion {rule.name} is already registered")
    _FUSIONS[rule.name] = rule
    return rule


def fusions() -> list[FusionRule]:
    return list(_FUSIONS.values())
