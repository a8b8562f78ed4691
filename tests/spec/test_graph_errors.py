"""Errors found when a spec becomes a graph: block types, block parameters, arity, cycles, shapes."""
import pytest

from xlstm_metal import SpecError, build_graph

TINY = """\
name: t
dims: {d: 32, heads: 2, vocab: 50}
nodes:
  - {name: emb, type: embedding, inputs: [tokens], num_embeddings: vocab, dim: d}
  - {name: norm, type: rms_norm, inputs: [emb]}
  - {name: mix, type: mlstm, inputs: [norm], num_heads: heads}
  - {name: res, type: add, inputs: [emb, mix]}
  - {name: head, type: lm_head, inputs: [res], vocab_size: vocab}
outputs: [head]
"""


def error_of(text: str) -> SpecError:
    with pytest.raises(SpecError) as info:
        build_graph(text, materialize=False)
    return info.value


def test_valid_spec_builds_a_dag_with_inferred_types():
    g = build_graph(TINY)
    assert g.order == ["tokens", "emb", "norm", "mix", "res", "head"]
    assert str(g.node("mix")["out_type"]) == "[B,S,32]"
    assert str(g.node("head")["out_type"]) == "[B,S,50]"
    assert g.lint() == []
    assert g.stateful_nodes() == ["mix"]


@pytest.mark.parametrize(
    "old, new, node, field, fragment, hint",
    [
        ("type: mlstm,", "type: mlstn,", "mix", "type", "unknown block type 'mlstn'", "did you mean 'mlstm'?"),
        ("num_heads: heads}", "num_head: heads}", "mix", "num_head", "unknown parameter", "did you mean 'num_heads'?"),
        ("num_heads: heads}", "}", "mix", "num_heads", "required parameter", None),
        ("num_heads: heads}", "num_heads: eight}", "mix", "num_heads", "valid integer", None),
        ("num_heads: heads}", "num_heads: haeds}", "mix", "num_heads", "valid integer", "did you mean 'heads'?"),
        ("num_heads: heads}", "num_heads: 3}", "mix", "num_heads", "divisible", None),
        ("inputs: [emb, mix]", "inputs: [mix]", "res", "inputs", "at least 2", None),
        ("inputs: [emb, mix]", "inputs: [tokens, mix]", "res", "inputs", "features", None),
        ("num_heads: heads}", "num_heads: heads, kernel: chunky}", "mix", "kernel", "unknown kernel 'chunky'", "chunkwise"),
        ("type: rms_norm, inputs: [emb]}", "type: rms_norm, inputs: [emb], kernel: step}", "norm", "kernel", "runs no kernel", None),
        ("num_heads: heads}", "num_heads: heads, chunk_size: 0}", "mix", "chunk_size", "positive integer", None),
    ],
)
def test_graph_errors_name_node_field_and_hint(old, new, node, field, fragment, hint):
    assert old in TINY
    err = error_of(TINY.replace(old, new))
    assert err.node == node, str(err)
    assert err.field == field, str(err)
    assert fragment in err.message, str(err)
    assert err.line is not None
    if hint:
        assert hint in (err.hint or ""), str(err)


def test_cycle_is_reported_with_its_path():
    err = error_of(TINY.replace("inputs: [emb]}", "inputs: [res]}"))
    assert "cycle" in err.message
    assert "norm -> mix -> res -> norm" in err.message or "mix -> res -> norm -> mix" in err.message or "res -> norm -> mix -> res" in err.message


def test_dimension_mismatch_on_an_edge_lists_the_input_types():
    text = TINY.replace("  - {name: res,", "  - {name: proj, type: embedding, inputs: [tokens], num_embeddings: vocab, dim: 16}\n  - {name: res,").replace(
        "inputs: [emb, mix]", "inputs: [proj, mix]")
    err = error_of(text)
    assert err.node == "res"
    assert "16" in err.message and "32" in err.message


def test_nested_names_that_would_collide_are_rejected():
    err = error_of(TINY.replace("name: norm,", "name: emb.norm,").replace("inputs: [norm]", "inputs: [emb.norm]"))
    assert "collide" in err.message


@pytest.mark.parametrize("name", ["xlstm_7b", "xlstm_tiny", "xlstm_parallel_heads"])
def test_shipped_specs_build_and_lint_clean(name):
    g = build_graph(name)  # lazy MLX modules: even the 7B graph allocates nothing
    assert g.lint() == []
    assert g.outputs == ["lm_head"]
