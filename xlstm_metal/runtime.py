"""The interpreter: runs an ``ExecutionPlan`` over the graph's blocks, carrying ``State``; an error inside a
block is re-raised as ``NodeExecutionError`` naming the node."""
from __future__ import annotations

import contextlib
from collections import Counter, deque

import mlx.core as mx

from xlstm_metal.kernels.quantized import dequantized_matmuls
from xlstm_metal.modes import inference_mode

from .graph import ModelGraph
from .plan import ExecutionPlan, PlanStep
from .state import State


class NodeExecutionError(RuntimeError):
    def __init__(self, node: str, block_type: str, error: BaseException):
        self.node, self.block_type, self.error = node, block_type, error
        super().__init__(f"while executing node '{node}' ({block_type}): {type(error).__name__}: {error}")


def init_state(graph: ModelGraph, batch_size: int) -> State:
    return State({n: graph.block(n).init_state(batch_size) for n in graph.stateful_nodes()}).checked_for(graph)


def _recomputed(block):
    """``block``'s call under ``mx.checkpoint``, its weights among the inputs so that they get gradients."""
    def call(inputs, state, ctx):
        def inner(params, inputs, *state):
            block.update(params)
            return block(inputs, state[0] if state else None, ctx)

        return mx.checkpoint(inner)(block.trainable_parameters(), inputs, *(() if state is None else (state,)))

    return call


def execute(graph: ModelGraph, plan: ExecutionPlan, tokens: mx.array, state: State | None = None, *,
            mask: mx.array | None = None, training: bool = False, eval_every: str | None = None, eval_ahead: int = 1,
            last_only: bool = False, checkpoint: bool = False,
            outputs: list[str] | None = None) -> tuple[dict[str, mx.array], State]:
    """Run ``plan`` on ``tokens`` [B, S]; returns the declared outputs (or the nodes named in ``outputs``: what
    only other nodes need is then never computed, MLX being lazy) and the new state.

    Inputs run in the plan's segments, the state carried across: exact, and differentiable as one graph when
    nothing evaluates in between. ``eval_every="stateful"`` (inference only) evaluates after each stateful block
    and each segment, so a long prompt holds one layer's temporaries at a time; up to ``eval_ahead``
    such evaluations stay in flight (``mx.async_eval``) while the host builds the next layer, at the cost of
    that many more layers' temporaries. ``last_only``: outputs hold only the last position, and after the last
    stateful block only that position is computed (the blocks after it are position-wise). ``checkpoint``
    (training): each block with weights on float inputs keeps only its inputs for the backward, which recomputes
    its forward (token ids, which have no gradient, are no such input).
    """
    if tokens.ndim != 2:
        raise ValueError(f"tokens must have shape [batch, seq_len], got {tuple(tokens.shape)}")
    if eval_every not in (None, "stateful"):
        raise ValueError(f"eval_every must be None or 'stateful', got {eval_every!r}")
    last_stateful = max((k for k, s in enumerate(plan.steps) if graph.block(s.node).stateful), default=-1)
    evaluates = eval_every == "stateful" and last_stateful >= 0
    reads = Counter(src for step in plan.steps for src in step.inputs)  # steps reading each value
    wanted = list(graph.outputs if outputs is None else outputs)

    def run(steps: list[PlanStep], tokens: mx.array, state: State, mask) -> tuple[dict[str, mx.array], State]:
        """One segment through ``steps``; returns the outputs they compute and the new state."""
        values: dict[str, mx.array] = {name: tokens for name in graph.inputs}
        remaining, new_entries, in_flight = Counter(reads), dict(state.entries), deque()
        for k, step in enumerate(steps):
            block = graph.block(step.node)
            ctx = step.context(mask, training)
            inputs = [values[s] for s in step.inputs]
            if last_only and k > last_stateful:
                inputs = [x[:, -1:] for x in inputs]
                ctx.mask = None
            new = None
            try:
                if step.computed_by:  # its fusing step has computed it
                    out = values[step.node]
                elif step.fuses:
                    out, values[step.fuses] = step.fusion.run(step.fusion_kernel, block, graph.block(step.fuses),
                                                              inputs)
                else:
                    recompute = checkpoint and all(mx.issubdtype(x.dtype, mx.floating) for x in inputs)
                    call = _recomputed(block) if recompute and block.trainable_parameters() else block
                    out, new = call(inputs, new_entries.get(step.node), ctx)
            except Exception as exc:  # noqa: BLE001 - re-raised with the node named
                name = f"{step.node} (fused with {step.fuses})" if step.fuses else step.node
                raise NodeExecutionError(name, step.type, exc) from exc
            values[step.node] = out
            if block.stateful:
                new_entries[step.node] = new
                if evaluates and eval_ahead <= 0:
                    mx.eval(out, new)
                elif evaluates:
                    mx.async_eval(out, new)
                    in_flight.append((out, new))
                    if len(in_flight) > eval_ahead:
                        mx.eval(in_flight.popleft())
            for s in step.inputs:  # free what no later step reads
                remaining[s] -= 1
                if remaining[s] == 0 and s not in wanted:
                    values.pop(s, None)
        outs = {o: values[o][:, -1:] if last_only else values[o] for o in wanted if o in values}
        return outs, State(new_entries, state.tokens_seen + int(tokens.shape[1]), dict(state.metadata))

    segments = plan.cut(int(tokens.shape[1]))
    state = (State() if state is None else state).checked_for(graph)  # refuses another architecture's state
    pieces: dict[str, list[mx.array]] = {o: [] for o in wanted}
    # evaluating as it goes is impossible under a gradient, so nothing here is differentiated: the fused kernels
    # run without their gradient wrapper
    try:
        with inference_mode() if evaluates else contextlib.nullcontext(), dequantized_matmuls(plan.dequantize):
            for n, (a, b) in enumerate(segments):
                # with last_only, a segment before the last only carries the state: the steps after the last
                # stateful one (position-wise, their outputs dropped) do not run
                tail = last_only and n < len(segments) - 1
                outs, state = run(plan.steps[:last_stateful + 1] if tail else plan.steps, tokens[:, a:b], state,
                                  None if mask is None else mask[:, a:b])
                for o, v in outs.items():
                    pieces[o].append(v)
                if eval_every and len(segments) > 1:  # bound memory per segment
                    mx.eval(list(outs.values()), state.arrays())
    except ValueError as exc:
        if not evaluates or "graph transformation" not in str(exc):
            raise
        raise ValueError(
            f"execute(eval_every={eval_every!r}) evaluates layer by layer (the runner's prefill does, to bound "
            f"memory), which MLX forbids under mx.grad / vjp / compile: differentiate execute(runner.graph, "
            f"runner.plan(seq_len), tokens) without eval_every (or train with xlstm_metal.train.Trainer)") from None
    if last_only or len(segments) == 1:
        return {o: p[-1] for o, p in pieces.items()}, state
    return {o: mx.concatenate(p, axis=1) for o, p in pieces.items()}, state
