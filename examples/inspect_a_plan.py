"""How the scheduler plans the NX-AI xLSTM-7b architecture for prefill and decoding (no weights allocated).

    python examples/inspect_a_plan.py
"""
from xlstm_metal import build_graph, make_plan

graph = build_graph("xlstm_7b")  # blocks are lazy MLX modules: nothing is allocated
print(f"{graph.name}: {graph.num_parameters() / 1e9:.2f} B parameters, {len(graph.compute_nodes())} nodes")

for seq_len in (1, 6, 4096, 40_000):
    plan = make_plan(graph, seq_len, dtype="bfloat16")
    forms = sorted({s.form for s in plan.kernel_steps()})
    print(f"seq_len={seq_len:>6}: mLSTM form {forms}, chunk {plan.kernel_steps()[0].chunk_size}, "
          f"{len(plan.segments)} prefill segment(s)")

# Per-node overrides: pin one layer to the step loop and another to a smaller chunk.
plan = make_plan(graph, 4096, overrides={"backbone.blocks.0.mlstm_layer": {"kernel": "sequence"},
                                         "backbone.blocks.1.mlstm_layer": {"chunk_size": 32}})
print("\n".join(str(plan).splitlines()[:12]))
