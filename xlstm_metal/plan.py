"""The scheduler: (graph, input length, device, overrides) → a printable ``ExecutionPlan``.

Per kernel-using node it picks the form (``step`` for one token, ``sequence`` for a few,
``chunkwise`` for prefill), the best available implementation of that form from the kernel
registry, and a chunk size; for long prompts it splits prefill into segments so activation
memory stays bounded while the recurrent state carries across segment borders exactly.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from xlstm_metal.blocks import TensorType
from xlstm_metal.kernels import FusionRule, KernelInfo, current_device, fusions, get_kernel, select_kernel

from .graph import ModelGraph, _format_table
from .spec.model import KERNEL_CHOICES

DEFAULT_CHUNK_SIZE = 64
SEQUENCE_MAX_LEN = 8  # up to this many tokens a step loop beats a chunkwise pass
# Prefill segment length: bounds activation memory (each segment's per-chunk states are transient). 7B bf16,
# H200, layers evaluated one ahead (runner.eval_ahead = 1; benchmarks/results/h200_run8_7b.json): 32k-token
# prompt, 4096 -> 39.5k tok/s at weights + 2.5 GB; 2048 -> 38.2k tok/s at + 1.5 GB; a 4k prompt 40.6k vs 39.1k.
# runner.set_segment_len(4096) trades 1 GB for ~3 % speed on prompts longer than 2048 tokens. Run 10
# (benchmarks/probe_prefill_memory.py, h200_run10_prefill_memory.json): 2048 -> + 1.36 GB at 36.6k tok/s, 1024 ->
# + 0.82 GB at 34.5k.
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
    segments: list[tuple[int, int]] = field(default_factory=list)
    sharding: dict[str, str] = field(default_factory=dict)  # node -> what this rank owns

    def step(self, node: str) -> PlanStep:
        for s in self.steps:
            if s.node == node:
                return s
        raise KeyError(node)

    def kernel_steps(self) -> list[PlanStep]:
        return [s for s in self.steps if s.kernel is not None]

    def __str__(self) -> str:
        head = (f"ExecutionPlan for '{self.graph.name}': seq_len={self.seq_len}, device={self.device}, dtype={self.dtype}, "
                f"{len(self.steps)} nodes")
        if len(self.segments) > 1:
            head += f", prefill in {len(self.segments)} segments of ≤{self.segments[0][1] - self.segments[0][0]} tokens"
        rows = [("#", "node", "type", "inputs", "output", "kernel", "chunk") + (("owner",) if self.sharding else ())]
        for k, s in enumerate(self.steps):
            kern = s.describe_kernels()
            owner = (self.sharding.get(s.node, "replicated"),) if self.sharding else ()
            rows.append((k, s.node, s.type, ", ".join(s.inputs), str(s.out_type), kern, s.chunk_size or "-") + owner)
        return head + "\n" + _format_table(rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "graph": self.graph.name, "seq_len": self.seq_len, "device": self.device, "dtype": self.dtype,
            "segments": self.segments,
            "steps": [{"node": s.node, "type": s.type, "inputs": list(s.inputs), "output": str(s.out_type),
                       "kernel": s.kernel.name if s.kernel else None, "form": s.form, "chunk_size": s.chunk_size,
                       "reason": s.reason, "aux": [k.name for k in s.aux], "fuses": s.fuses,
                       "fusion_kernel": s.fusion_kernel.name if s.fusion_kernel else None,
                       "computed_by": s.computed_by} for s in self.steps],
        }


def auto_form(seq_len: int, sequence_max_len: int = SEQUENCE_MAX_LEN) -> str:
    if seq_len <= 1:
        return "step"
    if seq_len <= sequence_max_len:
        return "sequence"
    return "chunkwise"


def make_plan(
    graph: ModelGraph,
    seq_len: int,
    *,
    device: str | None = None,
    dtype: str = "float32",
    overrides: dict[str, dict[str, Any]] | None = None,
    segment_len: int | None = DEFAULT_SEGMENT_LEN,
    sequence_max_len: int = SEQUENCE_MAX_LEN,
    training: bool = False,
) -> ExecutionPlan:
    """Schedule ``graph`` for inputs of ``seq_len`` tokens.

    ``overrides`` maps node names to ``{"kernel": ..., "chunk_size": ...}`` and wins over the
    spec's own per-node overrides, which win over the automatic choice. ``training``: only kernels
    that autograd runs through (fused GPU kernels define no gradient).
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
            head_dims = tuple(getattr(data["block"], "head_dims", ()) or ()) if data["block"] is not None else ()
            if choice == "auto":
                form = auto_form(seq_len, sequence_max_len)
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
                    kernel, form, reason = None, "sequence", f"{choice} pinned: more than one token runs as a loop of steps"
            if kernel is None:
                kernel = select_kernel(cls.kernel_family, form, device=device, dtype=dtype, head_dims=head_dims,
                                       training=training)
            if kernel.form != "chunkwise":
                chunk = None
        aux = tuple(select_kernel(fam, "fused", device=device, dtype=dtype, training=training)
                    for fam in getattr(cls, "aux_kernels", ()))
        steps.append(PlanStep(name, data["type"], tuple(spec_node.inputs), data["out_type"], kernel, chunk, reason,
                              aux))
    steps = _fuse(graph, steps, device=device, dtype=dtype, training=training)
    segments = _segments(seq_len, segment_len, [s.chunk_size for s in steps if s.chunk_size])
    return ExecutionPlan(graph, seq_len, device, dtype, steps, segments)


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


def _segments(seq_len: int, segment_len: int | None, chunks: list[int]) -> list[tuple[int, int]]:
    if not segment_len or seq_len <= segment_len:
        return [(0, seq_len)]
    # Keep segment borders on chunk borders so every segment runs whole chunks.
    align = max(chunks) if chunks else 1
    seg = max(align, (segment_len // align) * align)
    return [(s, min(s + seg, seq_len)) for s in range(0, seq_len, seg)]
