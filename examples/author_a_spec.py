"""Author a new architecture in YAML, see its errors, its plan and its picture, then run it.

    python examples/author_a_spec.py
"""
from xlstm_metal import SpecError, build_graph, xLSTMRunner
from xlstm_metal.render import to_mermaid

SPEC = """
name: my-hybrid
dims: {d: 96, vocab: 256, depth: 2}
nodes:
  - {name: backbone.embeddings, type: embedding, inputs: [tokens], num_embeddings: vocab, dim: d}
  - repeat: depth
    name: backbone.blocks.{i}
    inputs: {x: backbone.embeddings}
    vary: {heads: [2, 4]}                 # a different head count in each block
    nodes:
      - {name: norm, type: rms_norm, inputs: [x]}
      - {name: mlstm_layer, type: mlstm, inputs: [norm], num_heads: heads, chunk_size: 16}
      - {name: ffn, type: swiglu, inputs: [norm], proj_factor: 2.0, round_up_to: 32}
      - {name: out, type: add, inputs: [x, mlstm_layer, ffn]}   # parallel block: one 3-way residual add
  - {name: backbone.out_norm, type: rms_norm, inputs: [backbone.blocks]}
  - {name: lm_head, type: lm_head, inputs: [backbone.out_norm], vocab_size: vocab, soft_cap: 30.0}
outputs: [lm_head]
"""

# 1. Mistakes come back as a SpecError naming line, node, field and a fix.
try:
    build_graph(SPEC.replace("num_heads: heads", "num_heads: haeds"))
except SpecError as err:
    print("A typo is explained:\n", err, "\n")

# 2. The graph, its plan for a 300-token prompt, and a Mermaid picture.
runner = xLSTMRunner.from_spec(SPEC, seed=0)
print(runner.plan(300), "\n")
print(to_mermaid(runner.graph, runner.plan(300))[:400], "...\n")

# 3. Prefill, then decode greedily while carrying the state.
logits, state = runner([[1, 2, 3, 4, 5]])
token = logits[:, -1].argmax(-1)
generated = []
for _ in range(8):
    generated.append(int(token.item()))
    logits, state = runner(token[:, None], state)
    token = logits[:, -1].argmax(-1)
print("generated token ids:", generated)
print(f"{runner.num_parameters():,} parameters; state {state.nbytes / 1024:.1f} KiB")
