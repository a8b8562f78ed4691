"""Specs that would exhaust memory, time or MLX's sizes are refused with one located SpecError before anything
is built: alias bombs, deep nesting, nested repeats, huge expressions and sizes, impossible allocations."""
import time
import tracemalloc

import pytest

from xlstm_metal import SpecError, build_graph
from xlstm_metal.checkpoint import open_checkpoint
from xlstm_metal.errors import InputError
from xlstm_metal.runner import xLSTMRunner
from xlstm_metal.spec import load_spec, shipped_spec_path

TINY = shipped_spec_path("xlstm_tiny").read_text()


def alias_bomb(levels: int = 12) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n" + TINY


def refused(spec, budget_s: float = 5.0, budget_mb: float = 100.0, build=lambda s: build_graph(s, materialize=False)):
    """The SpecError ``spec`` raises, checking it came fast and with little memory."""
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(SpecError) as info:
            build(spec)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - t0 < budget_s
    assert peak < budget_mb * 2**20, f"peak {peak / 2**20:.0f} MB"
    return info.value


def test_a_2kb_alias_bomb_is_refused_without_expanding_it(tmp_path):
    text = alias_bomb()
    assert len(text) < 3000  # 9**12 values once expanded
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    err = refused(path)
    assert err.file == str(path) and "aliases" in err.message


def test_an_alias_bomb_in_a_checkpoint_wiring_spec_is_refused(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "wiring_spec.yaml").write_text(alias_bomb())
    err = refused(tmp_path, build=open_checkpoint)
    assert "wiring_spec.yaml" in str(err)


def test_a_recursive_alias_is_refused():
    assert "contains it" in refused("x: &a [*a]\n" + TINY).message


def test_aliases_of_reasonable_size_still_work():
    text = TINY.replace("  - repeat: num_blocks", "  - repeat: num_blocks").replace(
        "{name: norm_mlstm, type: rms_norm, inputs: [x], eps: norm_eps}",
        "{name: norm_mlstm, type: rms_norm, inputs: [x], eps: &eps 1.0e-5}").replace(
        "{name: norm_ffn, type: rms_norm, inputs: [res_mlstm], eps: norm_eps}",
        "{name: norm_ffn, type: rms_norm, inputs: [res_mlstm], eps: *eps}")
    assert {n.params["eps"] for n in load_spec(text).nodes if n.type == "rms_norm" and "blocks" in n.name} == {1e-5}


@pytest.mark.parametrize("text", [
    "name: x\nnodes: " + "[" * 5000 + "]" * 5000 + "\noutputs: []\n",
    "name: x\nnodes: []\noutputs: []\ndims: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n",
    "name: x\nnodes: []\noutputs: []\ndims: " + "[" * 80 + "]" * 80 + "\n",
])
def test_deeply_nested_yaml_is_one_spec_error(text):
    assert "nested" in refused(text).message


NESTED = """\
name: x
dims: {d: 8}
nodes:
  - {name: e, type: embedding, inputs: [tokens], num_embeddings: 10, dim: d}
  - repeat: 10000
    name: a.{i}
    inputs: {x: e}
    nodes:
      - repeat: 10000
        name: b.{i}
        inputs: {y: x}
        nodes:
          - {name: n, type: rms_norm, inputs: [y]}
  - {name: h, type: lm_head, inputs: [a], vocab_size: 10}
outputs: [h]
"""


def test_nested_repeats_cannot_multiply_past_the_total_node_cap():
    err = refused(NESTED)
    assert err.line == 5 and err.field == "repeat" and "100,000 nodes" in err.message


@pytest.mark.parametrize("expr", ["+".join(["1"] * 100_000), "(" * 300 + "1" + ")" * 300, "-" * 5000 + "1"])
def test_huge_dim_expressions_give_a_short_located_error(expr):
    err = refused(TINY.replace("vocab_size: 512", f"vocab_size: {expr}"))
    assert err.node == "backbone.embeddings" and err.field == "num_embeddings" and err.line == 14
    assert all(len(str(issue)) < 300 for issue in err.issues)


def test_an_expression_error_names_file_line_and_node(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(TINY.replace("vocab_size: vocab_size, soft_cap", "vocab_size: vocab_size // 0, soft_cap"))
    err = refused(path)
    assert (err.file, err.line, err.node, err.field) == (str(path), 36, "lm_head", "vocab_size")
    assert str(err).startswith(f"{path}:36: node 'lm_head', field 'vocab_size': cannot evaluate")


def test_sizes_beyond_mlx_are_refused_naming_node_and_field():
    err = refused(TINY.replace("vocab_size: 512", "vocab_size: 10**12"))
    assert {(i.node, i.field) for i in err.issues} == {("backbone.embeddings", "num_embeddings"),
                                                       ("lm_head", "vocab_size")}
    assert "at most 2,147,483,647" in err.message


def test_a_derived_width_beyond_mlx_is_refused_when_the_blocks_are_created():
    err = refused(TINY.replace("proj_factor: 2.667", "proj_factor: 1.0e12"), build=build_graph)
    assert err.node == "backbone.blocks.0.ffn" and "cannot create its parameters" in err.message


def test_an_allocation_larger_than_memory_is_refused_before_mlx_allocates():
    err = refused(TINY.replace("vocab_size: 512", "vocab_size: 2000000000"), budget_mb=200,
                  build=lambda s: xLSTMRunner.from_spec(s))
    assert (err.node, err.field) == ("backbone.embeddings", "num_embeddings")
    assert "more than the" in err.message and "of memory here" in err.message


def test_the_memory_check_counts_the_dtype():
    graph = build_graph("xlstm_tiny")
    f32 = sum(graph.parameter_bytes("float32").values())
    assert f32 == 4 * graph.num_parameters() == 2 * sum(graph.parameter_bytes("bfloat16").values())
    assert graph.memory_issue("float32", limit=f32) is None
    assert graph.memory_issue("bfloat16", limit=f32 // 2 + 1) is None
    with pytest.raises(SpecError, match="in float32, more than the"):
        graph.require_memory("float32", limit=f32 - 1)


def test_a_value_of_the_wrong_type_is_one_issue():
    err = refused(TINY.replace("vocab_size: 512", "vocab_size: [1, 2]"))
    assert len(err.issues) == 1 and err.field == "dims.vocab_size" and "got [1, 2]" in err.message


def test_spec_errors_are_input_errors():
    assert issubclass(SpecError, InputError)
