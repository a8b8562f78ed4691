"""The scheduler: (graph, input length, device, overrides) → a printable ``ExecutionPlan``.

Per kernel-using node it picks the form (``step`` for one token, ``sequence`` for a few, ``chunkwise`` for
prefill), the best available kernel of that form and a chunk size. The plan alone decides how a long input
is cut: into segments no longer than ``segment_len`` (activation memory) and than any chosen kernel takes in
one call (``KernelInfo.max_chunks``); the state carries across segment borders exactly.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import mlx.core as mx

from xlstm_metal.blocks import NodeContext, TensorType
from xlstm_metal.kernels import FusionRule, KernelInfo, current_device, fusions, get_kernel, select_kernel
from xlstm_metal.kernels import quantized as quantized_matmuls
from xlstm_metal.kernels.mlstm.recompute import recomputing_kernel

from .graph import ModelGraph, format_table
from .spec.model import KERNEL_CHOICES

DEFAULT_CHUNK_SIZE = 64
SEQUENCE_MAX_LEN = 8  # up to this many tokens a step loop beats a chunkwise pass
# bounds activation memory (each segment's per-chunk states are transient) at a small cost in prefill speed
DEFAULT_SEGMENT_LEN = 2048


@dataclass(frozen=True)
class PlanStep:
    node: str
    type: str
    inputs: tuple[str, ...]
    out_type: TensorType
    kernel: KernelInfo | None = None
    chunk_size: int | None = None
    reason: str = ""
    aux: tuple[KernelInfo, ...] = ()  # kernels of the block's ``aux_kernels`` families (e.g. its output norm)
    fuses: str | None = None  # this step also computes that following node, with ``fusion_kernel``
    fusion: FusionRule | None = None
    fusion_kernel: KernelInfo | None = None
    computed_by: str | None = None  # this node's output comes from that earlier (fusing) step

    @property
    def form(self) -> str | None:
        return self.kernel.form if self.kernel else None

    @property
    def max_tokens(self) -> int | None:
        """The most tokens its kernel takes in one call (``KernelInfo.max_chunks`` chunks), None for any."""
        return self.kernel.max_chunks * self.chunk_size if self.kernel and self.kernel.max_chunks else None

    def context(self, mask: mx.array | None, training: bool) -> NodeContext:
        """What the block's call is told: its node, kernel, chunk size, auxiliary kernels, the padding mask."""
        return NodeContext(self.node, self.kernel, self.chunk_size, mask, training,
                           aux={a.family: a for a in self.aux})

    def describe_kernels(self) -> str:
        """The plan table's kernel column: the node's kernel, its auxiliary kernels, a fusion."""
        parts = [f"{self.kernel.name} ({self.kernel.form})"] if self.kernel else []
        parts += [k.name for k in self.aux]
        if self.fuses:
            parts.append(f"{self.fusion_kernel.name} (with {self.fuses})")
        if self.computed_by:
            parts.append(f"computed by {self.computed_by}")
        return " + ".join(parts) or "-"


@dataclass
class ExecutionPlan:
    graph: ModelGraph
    seq_len: int
    device: str
    dtype: str
    steps: list[PlanStep]
    sharding: dict[str, str] = field(default_factory=dict)  # node -> what this rank owns
    segment_len: int | None = None  # the longest segment (None: any input runs in one piece)
    segment_why: str = ""
    dequantize: bool = False  # quantized weights multiply dequantized (a long prefill of a quantized model)

    @property
    def segments(self) -> list[tuple[int, int]]:
        """The segments the planned length runs in."""
        return self.cut(self.seq_len)

    def cut(self, seq_len: int) -> list[tuple[int, int]]:
        """The segments ``seq_len`` tokens run in."""
        return segment_bounds(seq_len, self.segment_len)

    def step(self, node: str) -> PlanStep:
        try:
            return next(s for s in self.steps if s.node == node)
        except StopIteration:
            raise KeyError(node) from None

    def kernel_steps(self) -> list[PlanStep]:
        return [s for s in self.steps if s.kernel is not None]

    def __str__(self) -> str:
        head = (f"ExecutionPlan for '{self.graph.name}': seq_len={self.seq_len}, device={self.device}, "
                f"dtype={self.dtype}, {len(self.steps)} nodes")
        if len(self.segments) > 1:
            head += f", in {len(self.segments)} segments of ≤{self.segment_len} tokens ({self.segment_why})"
        if self.dequantize:
            head += ", quantized weights dequantized for the matmuls"
        rows = [("#", "node", "type", "inputs", "output", "kernel", "chunk") + (("owner",) if self.sharding else ())]
        for k, s in enumerate(self.steps):
            kern = s.describe_kernels()
            owner = (self.sharding.get(s.node, "replicated"),) if self.sharding else ()
            rows.append((k, s.node, s.type, ", ".join(s.inputs), str(s.out_type), kern, s.chunk_size or "-") + owner)
        return head + "\n" + format_table(rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "graph": self.graph.name, "seq_len": self.seq_len, "device": self.device, "dtype": self.dtype,
            "segments": self.segments, "segment_len": self.segment_len, "segment_why": self.segment_why,
            "dequantize": self.dequantize,
            "steps": [{"node": s.node, "type": s.type, "inputs": list(s.inputs), "output": str(s.out_type),
                       "kernel": s.kernel.name if s.kernel else None, "form": s.form, "chunk_size": s.chunk_size,
                       "max_tokens": s.max_tokens, "reason": s.reason, "aux": [k.name for k in s.aux], "fuses": s.fuses,
                       "fusion_kernel": s.fusion_kernel.name if s.fusion_kernel else None,
                       "computed_by": s.computed_by} for s in self.steps],
        }


def make_plan(graph: ModelGraph, seq_len: int, *, device: str | None = None, dtype: str = "float32",
              overrides: dict[str, dict[str, Any]] | None = None, segment_len: int | None = DEFAULT_SEGMENT_LEN,
              training: bool = False, quantized: bool = False) -> ExecutionPlan:
    """Schedule ``graph`` for inputs of ``seq_len`` tokens.

    ``overrides`` maps node names to ``{"kernel": ..., "chunk_size": ...}`` and wins over the
    spec's own per-node overrides, which win over the automatic choice. ``training``: only kernels
    that autograd runs through (fused GPU kernels define no gradient). ``quantized``: the model's weights are
    quantized; segments of at least ``kernels.quantized.dequantize_min_tokens`` tokens multiply by them dequantized.
    """
    if seq_len < 1:
        raise ValueError(f"seq_len must be >= 1, got {seq_len}")
    device = device or current_device()
    overrides = overrides or {}
    unknown = set(overrides) - set(graph.compute_nodes())
    if unknown:
        raise KeyError(f"overrides name nodes that are not in the graph: {', '.join(sorted(unknown))}")
    steps = []
    for name in graph.compute_nodes():
        data = graph.node(name)
        cls = data["block_cls"]
        spec_node = data["spec"]
        kernel = chunk = None
        reason = ""
        if cls.kernel_family:
            ov = overrides.get(name, {})
            choice = ov.get("kernel") or spec_node.kernel or "auto"
            chunk = ov.get("chunk_size") or spec_node.chunk_size or DEFAULT_CHUNK_SIZE
            head_dims = tuple(getattr(data["block"], "head_dims", None) or ())  # block None: not materialized
            if choice == "auto":
                form = "step" if seq_len <= 1 else "sequence" if seq_len <= SEQUENCE_MAX_LEN else "chunkwise"
                reason = f"auto: {seq_len} token(s) → {form}"
            elif choice == "step" and seq_len > 1:
                form, reason = "sequence", "override step: more than one token runs as a loop of steps"
            elif choice in KERNEL_CHOICES:
                form, reason = choice, "override"
            else:
                kernel, reason = get_kernel(cls.kernel_family, choice), "override (named kernel)"
                why = kernel.supports(device=device, dtype=dtype, head_dims=head_dims, training=training)
                if why:
                    raise LookupError(f"node '{name}' asks for kernel '{choice}', which cannot run here: {why}")
                if kernel.form == "step" and seq_len > 1:  # a pinned step kernel decodes; longer inputs loop
                    kernel, form = None, "sequence"
                    reason = f"{choice} pinned: more than one token runs as a loop of steps"
            if kernel is None:
                kernel = select_kernel(cls.kernel_family, form, device=device, dtype=dtype, head_dims=head_dims,
                                       training=training)
            if kernel.form != "chunkwise":
                chunk = None
            elif kernel.chunk:  # it works in chunks of its own length, whatever it is asked
                chunk = kernel.chunk
            if training and kernel.family == "mlstm" and kernel.form == "chunkwise":
                kernel = recomputing_kernel(kernel)  # the backward recomputes the cell: the forward keeps no
                # intra-chunk tensors of every layer for it
        aux = tuple(select_kernel(fam, "fused", device=device, dtype=dtype, training=training)
                    for fam in getattr(cls, "aux_kernels", ()))
        steps.append(PlanStep(name, data["type"], tuple(spec_node.inputs), data["out_type"], kernel, chunk, reason,
                              aux))
    steps = _fuse(graph, steps, device=device, dtype=dtype, training=training)
    cut, why = _segment_len(steps, segment_len)
    least = quantized_matmuls.dequantize_min_tokens(device) if quantized else None
    dequantize = least is not None and min(seq_len, cut or seq_len) >= least
    return ExecutionPlan(graph, seq_len, device, dtype, steps, segment_len=cut, segment_why=why, dequantize=dequantize)


def _fuse(graph: ModelGraph, steps: list[PlanStep], **where) -> list[PlanStep]:
    """Apply the registered fusion rules: a step whose output is the only input of a following step of the
    rule's type computes both, when the rule applies to their parameters and one of its kernels is available."""
    consumers: dict[str, list[PlanStep]] = {}
    for s in steps:
        for src in set(s.inputs):
            consumers.setdefault(src, []).append(s)
    by_name = {s.node: s for s in steps}
    taken: set[str] = set()
    for rule in fusions():
        for first in steps:
            if first.type != rule.first or first.node in taken:
                continue
            for then in consumers.get(first.node, []):
                if then.type != rule.then or then.inputs != (first.node,) or then.node in taken:
                    continue
                if rule.applies(graph.node(first.node)["params"], graph.node(then.node)["params"], first.inputs):
                    continue
                try:
                    kernel = select_kernel(rule.family, "fused", **where)
                except LookupError:
                    continue
                by_name[first.node] = replace(by_name[first.node], fuses=then.node, fusion=rule, fusion_kernel=kernel)
                by_name[then.node] = replace(by_name[then.node], computed_by=first.node)
                taken |= {first.node, then.node}
                break
    return [by_name[s.node] for s in steps]


def _segment_len(steps: list[PlanStep], segment_len: int | None) -> tuple[int | None, str]:
    """The longest segment: ``segment_len`` (memory), and no more than any step's kernel takes in one call; a
    multiple of the largest chunk size where that fits, so every segment but the last runs whole chunks."""
    cut, why = (segment_len, "segment_len bounds memory") if segment_len else (None, "")
    for s in steps:
        if s.max_tokens and (cut is None or s.max_tokens < cut):
            cut, why = s.max_tokens, f"{s.kernel.name} takes ≤{s.kernel.max_chunks} chunks a call"
    if cut is None:
        return None, ""
    align = max((s.chunk_size for s in steps if s.chunk_size), default=1)
    return max(align, cut // align * align) if why.startswith("segment_len") else (cut // align * align or cut), why


def segment_bounds(seq_len: int, segment_len: int | None) -> list[tuple[int, int]]:
    """``[0, seq_len)`` cut into pieces of ``segment_len`` tokens (the last one shorter); one piece for None."""
    if not segment_len or seq_len <= segment_len:
        return [(0, seq_len)]
    return [(s, min(s + segment_len, seq_len)) for s in range(0, seq_len, segment_len)]
