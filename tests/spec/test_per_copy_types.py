"""Per-copy block types in a ``repeat``: a node's ``type`` may name a ``vary`` key, ``vary`` takes a placement
``{VALUE: [positions], default: VALUE}`` (the official ``slstm_at``), ``by_type`` holds the parameters of one type
only, and every mistake is one SpecError naming file, line, node and field."""
import pytest

from xlstm_metal.graph import build_graph
from xlstm_metal.plan import make_plan
from xlstm_metal.spec import SpecError, load_spec
from xlstm_metal.spec.schema import spec_json_schema

SPEC = """\
name: t
dims: {d: 32, heads: 2, vocab: 50}
nodes:
  - {name: emb, type: embedding, inputs: [tokens], num_embeddings: vocab, dim: d}
  - repeat: 3
    name: blocks.{i}
    inputs: {x: emb}
    vary: {mixer: [mlstm, attention, slstm]}
    nodes:
      - {name: norm, type: rms_norm, inputs: [x]}
      - name: mix
        type: mixer
        inputs: [norm]
        num_heads: heads
        by_type:
          mlstm: {chunk_size: 16, qk_dim_factor: 1.0}
          attention: {window: 8}
      - {name: out, type: add, inputs: [x, mix]}
  - {name: head, type: lm_head, inputs: [blocks], vocab_size: vocab}
outputs: [head]
"""
EXPLICIT_PLACEMENT = "vary: {mixer: {attention: [1], slstm: [2], default: mlstm}}"


def spec_file(tmp_path, text):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return path


def error_of(tmp_path, text) -> SpecError:
    path = spec_file(tmp_path, text)
    with pytest.raises(SpecError) as info:
        build_graph(path)
    assert len(info.value.issues) == 1, str(info.value)
    assert info.value.file == str(path)
    return info.value


def mixers(spec):
    return [(n.name, n.type, n.params, n.chunk_size) for n in spec.nodes if n.name.endswith(".mix")]


def test_type_varies_per_copy_and_by_type_parameters_reach_only_their_type():
    assert mixers(load_spec(SPEC)) == [
        ("blocks.0.mix", "mlstm", {"num_heads": 2, "qk_dim_factor": 1.0}, 16),
        ("blocks.1.mix", "attention", {"num_heads": 2, "window": 8}, None),
        ("blocks.2.mix", "slstm", {"num_heads": 2}, None),
    ]
    graph = build_graph(SPEC)
    assert [graph.block(f"blocks.{i}.mix").__class__.__name__ for i in range(3)] == ["MLSTM", "Attention", "SLSTM"]
    assert graph.block("blocks.1.mix").params.window == 8


def test_by_type_overrides_the_shared_value():
    text = SPEC.replace("attention: {window: 8}", "attention: {window: 8, num_heads: 4}")
    assert [m[2]["num_heads"] for m in mixers(load_spec(text))] == [2, 4, 2]


def test_placement_equals_the_explicit_list():
    placed = load_spec(SPEC.replace("vary: {mixer: [mlstm, attention, slstm]}", EXPLICIT_PLACEMENT))
    assert mixers(placed) == mixers(load_spec(SPEC))
    assert [n.inputs for n in placed.nodes] == [n.inputs for n in load_spec(SPEC).nodes]


def test_placement_positions_may_be_dim_arithmetic():
    text = SPEC.replace("[mlstm, attention, slstm]", "{slstm: [heads], attention: [heads - 1], default: mlstm}")
    assert mixers(load_spec(text)) == mixers(load_spec(SPEC))


def test_a_parameter_for_one_type_only_is_checked_by_that_types_model(tmp_path):
    err = error_of(tmp_path, SPEC.replace("window: 8", "windw: 8"))
    assert (err.line, err.node, err.field) == (17, "blocks.1.mix", "windw")
    assert "unknown parameter for block type 'attention'" in err.message and "did you mean 'window'" in err.hint


def test_a_shared_parameter_one_type_does_not_take_names_that_copy(tmp_path):
    path = spec_file(tmp_path, SPEC.replace("num_heads: heads\n", "num_heads: heads\n        forget_bias_init: 1.0\n"))
    with pytest.raises(SpecError) as info:
        build_graph(path)
    assert [(i.line, i.node, i.field, i.message) for i in info.value.issues] == [
        (15, "blocks.0.mix", "forget_bias_init", "unknown parameter for block type 'mlstm'"),
        (15, "blocks.1.mix", "forget_bias_init", "unknown parameter for block type 'attention'"),
    ]  # the sLSTM copy takes it: sLSTM-only parameters belong under by_type.slstm


def test_by_type_for_a_type_no_copy_has_is_an_error(tmp_path):
    err = error_of(tmp_path, SPEC.replace("attention: {", "atention: {"))
    assert (err.line, err.node, err.field) == (17, "blocks.0.mix", "by_type.atention")
    assert err.hint == "did you mean 'attention'?"


@pytest.mark.parametrize("placement, line, message", [
    ("{slstm: [3], default: mlstm}", 8, "position 3 of 'slstm' is not a copy of this repeat"),
    ("{slstm: [-1], default: mlstm}", 8, "position -1 of 'slstm' is not a copy"),
    ("{slstm: [1, 1], default: mlstm}", 8, "position 1 is placed twice"),
    ("{slstm: [1], attention: [1], default: mlstm}", 8, "position 1 is placed for both 'slstm' and 'attention'"),
    ("{slstm: [1], attention: [0]}", 8, "positions [2] get no value"),
    ("{slstm: 1, default: mlstm}", 8, "must be a list of copy positions"),
    ("{slstm: [1], default: [mlstm]}", 8, "vary.mixer.default must be one value"),
])
def test_bad_placements_are_one_located_error(tmp_path, placement, line, message):
    err = error_of(tmp_path, SPEC.replace("[mlstm, attention, slstm]", placement))
    assert (err.line, err.node, err.field) == (line, "blocks.{i}", "vary.mixer")
    assert message in err.message


def test_a_placement_in_a_multi_line_spec_points_at_the_bad_position(tmp_path):
    text = SPEC.replace("vary: {mixer: [mlstm, attention, slstm]}",
                        "vary:\n      mixer:\n        slstm:\n          - 1\n          - 5\n        default: mlstm")
    err = error_of(tmp_path, text)
    assert (err.line, err.field) == (12, "vary.mixer")


def test_an_unused_vary_key_is_an_error_with_a_did_you_mean(tmp_path):
    err = error_of(tmp_path, SPEC.replace("vary: {mixer:", "vary: {mixr: [1, 2, 3], mixer:"))
    assert (err.line, err.node, err.field) == (8, "blocks.{i}", "vary.mixr")
    assert err.hint == "did you mean 'mixer'?"
    err = error_of(tmp_path, SPEC.replace("vary: {mixer:", "vary: {use_slstm: [0, 1, 0], mixer:"))
    assert err.field == "vary.use_slstm" and "no node of this repeat uses" in err.message


def test_a_vary_key_used_only_in_arithmetic_or_a_nested_repeat_counts_as_used():
    text = SPEC.replace("vary: {mixer:", "vary: {w: [1, 2, 3], mixer:").replace("window: 8", "window: w * 8")
    assert [m[2].get("window") for m in mixers(load_spec(text))] == [None, 16, None]


def test_by_type_cannot_change_name_type_or_inputs(tmp_path):
    err = error_of(tmp_path, SPEC.replace("window: 8", "window: 8, inputs: [x]"))
    assert (err.node, err.field) == ("blocks.1.mix", "by_type.attention.inputs")


WHEN = SPEC.replace("      - {name: out, type: add, inputs: [x, mix]}\n", """\
      - {name: res, type: add, inputs: [x, mix]}
      - {name: ffn, type: swiglu, inputs: [res], when: {mixer: [attention, slstm]}}
      - {name: out, type: add, inputs: [res, ffn], when: {mixer: [attention, slstm]}}
""")


def test_when_keeps_a_node_only_in_some_copies_and_elsewhere_its_name_stands_for_its_input():
    text = WHEN.replace("[attention, slstm]}}", "slstm}}").replace("inputs: [blocks]", "inputs: [blocks.0.out]")
    spec = load_spec(text)
    by = {n.name: n for n in spec.nodes}
    assert "blocks.0.ffn" not in by and "blocks.1.out" not in by and "blocks.2.ffn" in by
    assert by["blocks.1.norm"].inputs == ["blocks.0.res"]  # copy 0's output 'out' stands for 'res'
    assert by["blocks.2.norm"].inputs == ["blocks.1.res"]
    assert by["blocks.2.out"].inputs == ["blocks.2.res", "blocks.2.ffn"]
    assert by["head"].inputs == ["blocks.0.res"]


def test_a_group_whose_last_copy_leaves_out_its_output_ends_at_what_stands_for_it():
    spec = load_spec(WHEN.replace("[attention, slstm]}}", "attention}}").replace("inputs: [blocks]",
                                                                                 "inputs: [blocks, blocks.last.out]"))
    assert spec.nodes[-1].inputs == ["blocks.2.res", "blocks.2.res"]


def test_a_bad_when_is_one_located_error(tmp_path):
    err = error_of(tmp_path, WHEN.replace("ffn, type: swiglu, inputs: [res], when: {mixer:",
                                          "ffn, type: swiglu, inputs: [res], when: {mixr:"))
    assert (err.line, err.node, err.field) == (19, "blocks.0.ffn", "when.mixr")
    assert err.hint == "did you mean 'mixer'?"
    err = error_of(tmp_path, WHEN.replace("ffn, type: swiglu, inputs: [res],", "ffn, type: swiglu, inputs: [],"))
    assert (err.line, err.node, err.field) == (19, "blocks.0.ffn", "when")
    assert "needs a first input to stand for it" in err.message


def test_left_out_nodes_that_stand_for_each_other_are_an_error_not_a_hang(tmp_path):
    text = WHEN.replace("ffn, type: swiglu, inputs: [res]", "ffn, type: swiglu, inputs: [out]")
    text = text.replace("out, type: add, inputs: [res, ffn]", "out, type: add, inputs: [ffn, res]")
    with pytest.raises(SpecError) as info:
        load_spec(text.replace("[attention, slstm]}}", "gru}}"))  # both always left out: 'out' -> 'ffn' -> 'out'
    assert (info.value.line, info.value.node, info.value.field) == (10, "blocks.1.norm", "inputs")
    assert "input 'x' names no node" in info.value.message


def test_a_long_chain_of_copies_that_leave_out_everything_resolves_without_recursion():
    text = WHEN.replace("repeat: 3", "repeat: 3000")
    text = text.replace("[mlstm, attention, slstm]", "{slstm: [2999], default: mlstm}")
    text = text.replace("{name: norm, type: rms_norm, inputs: [x]}", "{name: norm, type: rms_norm, inputs: [x], "
                        "when: {mixer: slstm}}").replace("mlstm: {chunk_size: 16, qk_dim_factor: 1.0}\n", "")
    text = text.replace("      - name: mix\n", "      - name: mix\n        when: {mixer: slstm}\n")
    text = text.replace("{name: res, type: add, inputs: [x, mix]}", "{name: res, type: add, inputs: [x, mix], "
                        "when: {mixer: slstm}}").replace("attention: {window: 8}", "slstm: {}")
    assert load_spec(text).nodes[1].inputs == ["emb"]  # copy 2999 reads the embedding through 2999 empty copies


def test_a_vary_key_used_only_by_when_counts_as_used():
    text = WHEN.replace("vary: {mixer:", "vary: {ffn: [0, 1, 1], mixer:").replace("when: {mixer: [attention, slstm]}",
                                                                               "when: {ffn: 1}")
    assert [n.name for n in load_spec(text).nodes if n.type == "swiglu"] == ["blocks.1.ffn", "blocks.2.ffn"]


def test_hybrid_slstm_builds_mlstm_slstm_mlstm():
    spec = load_spec("hybrid_slstm")
    blocks = [[n.type for n in spec.nodes if n.name.startswith(f"backbone.blocks.{i}.")] for i in range(3)]
    mlstm_block = ["rms_norm", "mlstm", "add", "rms_norm", "swiglu", "add"]
    assert blocks == [mlstm_block, ["rms_norm", "slstm", "multihead_layer_norm", "add"], mlstm_block]
    by = {n.name: n for n in spec.nodes}
    assert by["backbone.blocks.0.res"].inputs == ["backbone.embeddings", "backbone.blocks.0.cell"]
    assert by["backbone.blocks.2.norm"].inputs == ["backbone.blocks.1.res"]
    assert by["backbone.out_norm"].inputs == ["backbone.blocks.2.out"]
    assert build_graph("hybrid_slstm").lint() == []


def test_the_xlstm_7_1_spec_has_42_mlstm_and_6_slstm_blocks_at_every_8th_position():
    plan = make_plan(build_graph("xlstm_7_1"), 64)
    cells = [(s.node, s.type) for s in plan.steps if s.node.endswith(".xlstm")]
    assert [n for n, _ in cells] == [f"xlstm_block_stack.blocks.{i}.xlstm" for i in range(48)]
    assert [i for i, (_, t) in enumerate(cells) if t == "slstm_layer"] == [7, 15, 23, 31, 39, 47]
    assert sum(t == "mlstm_layer" for _, t in cells) == 42
    ffns = [s.node for s in plan.steps if s.type == "gated_mlp"]
    assert ffns == [f"xlstm_block_stack.blocks.{i}.ffn" for i in (7, 15, 23, 31, 39, 47)]


def test_the_xlstm_7_1_spec_is_the_graph_of_the_official_7_1_config():
    from xlstm_metal.checkpoint.official_lm import official_lm_spec
    config = {"vocab_size": 64, "embedding_dim": 32, "num_blocks": 48, "slstm_at": [7, 15, 23, 31, 39, 47],
              "mlstm_block": {"mlstm": {"num_heads": 4}},
              "slstm_block": {"slstm": {"num_heads": 4, "backend": "vanilla"}}}

    def nodes(graph):
        return [(n, graph.node(n)["type"], graph.node(n)["spec"].inputs, graph.node(n)["params"].model_dump())
                for n in graph.compute_nodes()]
    assert nodes(build_graph("xlstm_7_1", materialize=False)) == \
        nodes(build_graph(official_lm_spec(config), materialize=False))


def test_the_xlstm_7_1_spec_is_short():
    from xlstm_metal.spec import shipped_spec_path
    assert len(shipped_spec_path("xlstm_7_1").read_text().splitlines()) <= 25


def test_json_schema_describes_placements_and_by_type():
    schema = spec_json_schema()
    text = str(schema)
    assert {"by_type", "when"} <= set(schema["$defs"]["Node_mlstm"]["properties"])
    vary = schema["$defs"]["Repeat"]["properties"]["vary"]
    assert "placement" in vary["description"] and "object" in str(vary["additionalProperties"])
    assert "default" in text


def test_the_readme_authoring_example_is_the_shipped_xlstm_7_1_spec():
    from pathlib import Path

    from xlstm_metal.spec import shipped_spec_path
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert f"```yaml\n{shipped_spec_path('xlstm_7_1').read_text()}```" in readme


def test_a_bad_per_type_chunk_size_points_at_its_by_type_line(tmp_path):
    err = error_of(tmp_path, SPEC.replace("chunk_size: 16", "chunk_size: 0"))
    assert (err.line, err.node, err.field) == (16, "blocks.0.mix", "chunk_size")
