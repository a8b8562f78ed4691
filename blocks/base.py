"""The contract every block type fulfils, and the registry that makes a type name usable in a spec.

A block is an ``mlx.nn.Module`` (so parameters, quantisation and autograd come from MLX) plus a
typed parameter model and a static shape rule. A block never decides which kernel runs: the plan
does, and hands the choice in through :class:`NodeContext`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import mlx.core as mx
import mlx.nn as nn
from pydantic import BaseModel, ConfigDict


@dataclass(frozen=True)
class TensorType:
    """Static type of a value flowing along an edge: token ids ``[B, S]`` or features ``[B, S, dim]``."""

    kind: str  # "tokens" or "features"
    dim: int | None = None

    @classmethod
    def tokens(cls) -> "TensorType":
        return cls("tokens", None)

    @classmethod
    def features(cls, dim: int) -> "TensorType":
        return cls("features", int(dim))

    def __str__(self) -> str:
        return "tokens[B,S]" if self.kind == "tokens" else f"[B,S,{self.dim}]"


class ShapeError(ValueError):
    """Raised by ``Block.infer`` when inputs do not fit; ``field`` names the parameter to fix."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class BlockParams(BaseModel):
    """Base for a block's parameters: unknown keys are errors, values are typed strictly
    (``num_heads: true`` or ``num_heads: 4.5`` is an error, not 1 or 4)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


@dataclass
class NodeContext:
    """What the plan tells a block for one call: the kernel chosen for it, chunk size, padding mask."""

    name: str = ""
    kernel: Any = None  # a kernels.registry.KernelInfo for kernel-using blocks
    chunk_size: int | None = None
    mask: mx.array | None = None  # [B, S] bool, True where the token is real (not padding)
    training: bool = False
    aux: dict = field(default_factory=dict)  # kernel family -> KernelInfo, for the block's ``aux_kernels``

    def aux_kernel(self, family: str, dtype) -> Any:
        """The plan's kernel of ``family`` for this node; outside a plan, the best one for here and now."""
        if family not in self.aux:
            self.aux[family] = self.select(family, "fused", dtype)
        return self.aux[family]

    def select(self, family: str, form: str, dtype, head_dims: tuple[int, ...] = ()) -> Any:
        """The best kernel of ``family``/``form`` for this device and ``dtype`` (calls outside a plan)."""
        from xlstm_metal.kernels import current_device, select_kernel

        return select_kernel(family, form, device=current_device(), dtype=str(dtype).split(".")[-1],
                             head_dims=head_dims, training=self.training)


class Block(nn.Module):
    """Base class of all block types.

    Subclasses set ``type_name``, ``Params`` and ``num_inputs`` and implement ``infer`` (static
    output type), ``__init__`` (create weights, with names following the official checkpoint keys)
    and ``forward``. Stateful blocks set ``stateful = True``, ``kernel_family`` when the scheduler
    picks a kernel for them, and implement ``init_state``.
    """

    type_name: ClassVar[str] = ""
    Params: ClassVar[type[BlockParams]] = BlockParams
    num_inputs: ClassVar[int | None] = 1  # None: any number >= 1
    stateful: ClassVar[bool] = False
    kernel_family: ClassVar[str | None] = None
    aux_kernels: ClassVar[tuple[str, ...]] = ()  # further kernel families (form "fused") the plan picks for it
    fixed_size_state: ClassVar[bool] = True  # False (e.g. a growing KV cache): decoding is not compiled
    summary: ClassVar[str] = ""

    def __init__(self, params: BlockParams, inputs: list[TensorType]):
        super().__init__()
        # object.__setattr__ keeps these out of MLX's parameter tree
        object.__setattr__(self, "_params", params)
        object.__setattr__(self, "_input_types", tuple(inputs))

    @property
    def params(self) -> BlockParams:
        return self._params

    @classmethod
    def infer(cls, params: BlockParams, inputs: list[TensorType]) -> TensorType:
        raise NotImplementedError

    def forward(self, inputs: list[mx.array], state: Any, ctx: NodeContext) -> tuple[mx.array, Any]:
        raise NotImplementedError

    def __call__(self, inputs: list[mx.array], state: Any = None, ctx: NodeContext | None = None):
        return self.forward(inputs, state, ctx or NodeContext())

    def init_state(self, batch_size: int) -> Any:
        """Fresh recurrent state for ``batch_size`` sequences (``None`` for stateless blocks)."""
        return None

    @classmethod
    def expect_heads(cls, inputs: list[TensorType], num_heads: int) -> TensorType:
        """Features whose width splits into ``num_heads`` equal heads (the output keeps the width)."""
        dim = cls.expect_features(inputs)
        if dim % num_heads:
            raise ShapeError(f"feature dim {dim} is not divisible by num_heads {num_heads}", field="num_heads")
        return TensorType.features(dim)

    @staticmethod
    def expect_features(inputs: list[TensorType], index: int = 0, what: str = "input") -> int:
        t = inputs[index]
        if t.kind != "features":
            raise ShapeError(f"{what} must be features [B,S,D], got {t} (token ids need an embedding first)")
        return int(t.dim)


def tp_reduce(block: Block, partial: mx.array) -> mx.array:
    """Sum a head- or width-sharded block's partial output over its ranks (identity when not sharded)."""
    group = getattr(block, "_tp_group", None)
    return partial if group is None else mx.distributed.all_sum(partial, group=group)


_REGISTRY: dict[str, type[Block]] = {}


def register_block(cls: type[Block]) -> type[Block]:
    """Class decorator: make ``cls`` usable as ``type: <cls.type_name>`` in a wiring spec."""
    name = cls.type_name
    if not name:
        raise TypeError(f"{cls.__name__} must set type_name before it can be registered")
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise TypeError(f"block type {name!r} is already registered by {_REGISTRY[name].__qualname__}")
    _REGISTRY[name] = cls
    return cls


def get_block(name: str) -> type[Block]:
    return _REGISTRY[name]


def block_types() -> dict[str, type[Block]]:
    return dict(sorted(_REGISTRY.items()))
