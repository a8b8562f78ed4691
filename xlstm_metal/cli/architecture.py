"""``xlstm-metal schema | specs | plan | run``: the spec, graph and plan layers from the command line."""
from __future__ import annotations

import json
import sys

from .registry import command
from .values import COUNT, POSITIVE, SEED, token_ids


# ---------------------------------------------------------------------- schema
def _schema_args(p):
    p.add_argument("-o", "--output", help="write the JSON Schema to this file (default: stdout)")


@command("schema", "write the JSON Schema of the wiring-spec format", _schema_args)
def cmd_schema(args) -> int:
    from ..spec.schema import write_schema

    text = write_schema(args.output)
    if not args.output:
        print(text)
    else:
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------- specs
@command("specs", "list the wiring specs shipped with the package")
def cmd_specs(args) -> int:
    from ..spec import load_spec, shipped_spec_path, shipped_specs

    for name in shipped_specs():
        spec = load_spec(shipped_spec_path(name))
        print(f"{name:28s} {spec.description}")
    return 0


# ---------------------------------------------------------------------- plan
def _plan_args(p):
    p.add_argument("spec", help="spec file, shipped spec name (see `xlstm-metal specs`) or checkpoint directory")
    p.add_argument("--seq-len", type=POSITIVE, default=1024, help="input length to plan for")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                   help="compute dtype the kernels are chosen for")
    p.add_argument("--format", default="table", choices=["table", "mermaid", "dot", "json"],
                   help="table: the plan; mermaid / dot: a picture of the graph; json: the plan as data")
    p.add_argument("--device", choices=["cpu", "gpu"], help="plan for this device (default: MLX's default)")


@command("plan", "print the execution plan (or a picture of the graph) for a spec, then warnings from the graph's "
                 "lint (nodes that reach no output, lm_head/embedding vocabularies that differ) and its memory need",
         _plan_args)
def cmd_plan(args) -> int:
    from ..graph import build_graph
    from ..plan import make_plan
    from ..render import to_dot, to_mermaid

    from ..checkpoint.load import spec_or_checkpoint

    graph = build_graph(spec_or_checkpoint(args.spec))  # blocks are lazy MLX modules: the 7B spec allocates nothing here
    plan = make_plan(graph, args.seq_len, device=args.device, dtype=args.dtype)
    if args.format == "table":
        print(plan)
        print(f"\nparameters: {graph.num_parameters():,}")
    elif args.format == "mermaid":
        print(to_mermaid(graph, plan), end="")
    elif args.format == "dot":
        print(to_dot(graph, plan), end="")
    else:
        print(json.dumps(plan.to_dict(), indent=2))
    memory = graph.memory_issue(args.dtype)
    for finding in graph.lint() + ([str(memory).replace("\n    hint:", ";")] if memory else []):
        print(f"warning: {finding}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------- run
def _run_args(p):
    p.add_argument("spec", help="spec file or shipped spec name")
    p.add_argument("--tokens", type=token_ids, default="1,2,3,4,5,6,7,8",
                   help="comma-separated prompt token ids (each below the spec's vocabulary size)")
    p.add_argument("--max-tokens", type=COUNT, default=16, help="tokens to generate after the prompt")
    p.add_argument("--seed", type=SEED, default=0, help="seed of the random weights")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                   help="weight and compute dtype")


@command("run", "build a spec with random weights, prefill token ids and decode greedily", _run_args)
def cmd_run(args) -> int:
    from ..runner import xLSTMRunner

    runner = xLSTMRunner.from_spec(args.spec, dtype=args.dtype, seed=args.seed)
    prompt = args.tokens
    responses = list(runner.stream(prompt, max_tokens=args.max_tokens, eos_token_ids=set()))  # greedy
    print(runner.plan(len(prompt)))
    print(f"\nprompt {prompt} → generated {[r.token for r in responses]}")
    if responses:
        last = responses[-1]
        print(f"prefill {last.prompt_tps:.1f} tok/s, decode {last.generation_tps:.1f} tok/s, "
              f"state {last.state.nbytes / 1024:.1f} KiB")
    return 0
