"""The scheduler: kernel form per length, overrides, named kernels, segments; the printed plan."""
import mlx.core as mx
import pytest

from xlstm_metal import build_graph, make_plan, xLSTMRunner
from xlstm_metal.render import to_dot, to_mermaid

SEVEN_B = build_graph("xlstm_7b")  # lazy: no 7B weights are allocated


@pytest.mark.parametrize("seq_len, form", [(1, "step"), (2, "sequence"), (8, "sequence"), (9, "chunkwise"), (4096, "chunkwise")])
def test_auto_picks_the_form_by_length(seq_len, form):
    plan = make_plan(SEVEN_B, seq_len, device="cpu")
    forms = {s.form for s in plan.kernel_steps()}
    assert forms == {form}
    assert len(plan.kernel_steps()) == 32


def test_chunk_size_comes_from_the_spec_and_only_for_chunkwise():
    plan = make_plan(SEVEN_B, 4096, device="cpu")
    assert {s.chunk_size for s in plan.kernel_steps()} == {64}
    assert {s.chunk_size for s in make_plan(SEVEN_B, 1, device="cpu").kernel_steps()} == {None}


def test_overrides_win_over_the_spec():
    plan = make_plan(SEVEN_B, 100, device="cpu", overrides={
        "backbone.blocks.3.mlstm_layer": {"kernel": "sequence"},
        "backbone.blocks.4.mlstm_layer": {"chunk_size": 32},
        "backbone.blocks.5.mlstm_layer": {"kernel": "native_chunkwise", "chunk_size": 16},
    })
    assert plan.step("backbone.blocks.3.mlstm_layer").form == "sequence"
    assert plan.step("backbone.blocks.4.mlstm_layer").chunk_size == 32
    s5 = plan.step("backbone.blocks.5.mlstm_layer")
    assert s5.kernel.name == "native_chunkwise" and s5.chunk_size == 16
    with pytest.raises(KeyError, match="not in the graph"):
        make_plan(SEVEN_B, 100, overrides={"backbone.blocks.99.mlstm_layer": {"kernel": "step"}})


def test_step_pinned_in_the_spec_runs_longer_inputs_as_a_step_loop():
    g = build_graph("xlstm_tiny")
    g.node("backbone.blocks.0.mlstm_layer")["spec"].kernel = "step"
    plan = make_plan(g, 50, device="cpu")
    assert plan.step("backbone.blocks.0.mlstm_layer").form == "sequence"
    assert plan.step("backbone.blocks.1.mlstm_layer").form == "chunkwise"


def test_long_prompts_get_chunk_aligned_segments():
    plan = make_plan(SEVEN_B, 20000, device="cpu", segment_len=8192)
    assert plan.segments == [(0, 8192), (8192, 16384), (16384, 20000)]
    unbounded = make_plan(SEVEN_B, 20000, device="cpu", segment_len=None)  # still cut where the kernel says
    assert unbounded.segments == [(0, 8192), (8192, 16384), (16384, 20000)]
    assert "native_chunkwise takes ≤128 chunks a call" in str(unbounded).splitlines()[0]
    assert make_plan(SEVEN_B, 8192, device="cpu", segment_len=None).segments == [(0, 8192)]
    assert make_plan(SEVEN_B, 1000, device="cpu", segment_len=100).segments[0] == (0, 64)


def test_printed_plan_is_a_table_naming_every_node_and_kernel():
    text = str(make_plan(SEVEN_B, 4096, device="cpu", dtype="bfloat16"))
    lines = text.splitlines()
    assert lines[0].startswith("ExecutionPlan for 'xlstm-7b': seq_len=4096, device=cpu, dtype=bfloat16, 195 nodes")
    assert lines[1].split() == ["#", "node", "type", "inputs", "output", "kernel", "chunk"]
    assert any("backbone.blocks.31.mlstm_layer" in l and "native_chunkwise (chunkwise)" in l and l.rstrip().endswith("64") for l in lines)
    assert len(lines) == 2 + 1 + 195


def test_graph_pictures_have_every_node_and_edge():
    g = build_graph("xlstm_tiny")
    plan = make_plan(g, 64, device="cpu")
    mm = to_mermaid(g, plan)
    assert mm.startswith("flowchart TD")
    assert mm.count("-->") == g.graph.number_of_edges()
    assert "native_chunkwise L=16" in mm
    dot = to_dot(g)
    assert dot.startswith('digraph "xlstm-tiny"') and dot.count("->") == g.graph.number_of_edges()


def test_seven_b_parameter_count_matches_the_published_model():
    assert abs(SEVEN_B.num_parameters() - 6.865e9) / 6.865e9 < 1e-3


def test_a_pinned_step_kernel_decodes_and_longer_inputs_use_the_sequence_form():
    g = build_graph("xlstm_tiny")
    over = {"backbone.blocks.0.mlstm_layer": {"kernel": "native_step"}}
    assert make_plan(g, 1, device="cpu", overrides=over).step("backbone.blocks.0.mlstm_layer").kernel.name == "native_step"
    long = make_plan(g, 40, device="cpu", overrides=over).step("backbone.blocks.0.mlstm_layer")
    assert long.form == "sequence" and "pinned" in long.reason


def test_a_residual_add_and_the_rms_norm_reading_it_are_planned_as_one_fused_step():
    """The fusion rule (kernels/add_rms_norm.py): the add computes the norm too; the norm's step names it."""
    plan = xLSTMRunner.from_spec("xlstm_tiny", seed=0).plan(1)
    add = plan.step("backbone.blocks.0.res_mlstm")
    assert add.fuses == "backbone.blocks.0.norm_ffn" and add.fusion_kernel.family == "add_rms_norm"
    assert plan.step("backbone.blocks.0.norm_ffn").computed_by == "backbone.blocks.0.res_mlstm"
    assert plan.step("backbone.blocks.1.out").fuses == "backbone.out_norm"
    assert plan.step("backbone.blocks.0.norm_mlstm").computed_by is None  # it reads the embedding, not an add
    assert "(with backbone.blocks.0.norm_ffn)" in str(plan) and plan.to_dict()["steps"][3]["fuses"]


def test_the_fusion_rule_leaves_norms_it_cannot_compute_alone():
    import yaml

    from xlstm_metal.spec import shipped_spec_path

    data = yaml.safe_load(shipped_spec_path("xlstm_tiny").read_text())
    block = data["nodes"][1]["nodes"]
    next(n for n in block if n["name"] == "norm_ffn")["use_bias"] = True  # the kernel is weight-only
    block.append({"name": "three", "type": "add", "inputs": ["x", "res_mlstm", "ffn"]})
    block.append({"name": "after_three", "type": "rms_norm", "inputs": ["three"]})
    data["nodes"][1]["output"] = "after_three"
    plan = xLSTMRunner.from_spec(data, seed=0).plan(1)
    assert plan.step("backbone.blocks.0.res_mlstm").fuses is None
    assert plan.step("backbone.blocks.0.three").fuses is None  # three inputs
    assert plan.step("backbone.blocks.0.norm_ffn").computed_by is None


def test_a_fused_step_that_fails_names_both_nodes():
    from xlstm_metal import NodeExecutionError

    runner = xLSTMRunner.from_spec("xlstm_tiny", seed=0, compile=False)
    norm = runner.graph.block("backbone.blocks.0.norm_ffn")
    norm.weight = mx.ones((7,))  # wrong width
    with pytest.raises(NodeExecutionError, match="res_mlstm \\(fused with backbone.blocks.0.norm_ffn\\)"):
        runner([[1, 2, 3]])
