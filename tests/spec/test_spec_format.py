"""The wiring-spec format: dims, repeat, name resolution — and a SpecError for every way to get it wrong."""
import pytest

from xlstm_metal.spec import SpecError, load_spec, shipped_specs

BASE = """\
name: t
dims: {d: 32, heads: 2, vocab: 50, depth: 3}
inputs: [tokens]
nodes:
  - {name: emb, type: embedding, inputs: [tokens], num_embeddings: vocab, dim: d}
  - repeat: depth
    name: blocks.{i}
    inputs: {x: emb}
    nodes:
      - {name: norm, type: rms_norm, inputs: [x]}
      - {name: out, type: add, inputs: [x, norm]}
  - {name: head, type: lm_head, inputs: [blocks], vocab_size: vocab}
outputs: [head]
"""


def error_of(text: str) -> SpecError:
    with pytest.raises(SpecError) as info:
        load_spec(text)
    return info.value


def test_repeat_stamps_copies_chained_through_their_output():
    spec = load_spec(BASE)
    names = [n.name for n in spec.nodes]
    assert names == ["emb", "blocks.0.norm", "blocks.0.out", "blocks.1.norm", "blocks.1.out",
                     "blocks.2.norm", "blocks.2.out", "head"]
    by = {n.name: n for n in spec.nodes}
    assert by["blocks.0.norm"].inputs == ["emb"]
    assert by["blocks.1.norm"].inputs == ["blocks.0.out"]
    assert by["blocks.2.out"].inputs == ["blocks.1.out", "blocks.2.norm"]
    assert by["head"].inputs == ["blocks.2.out"]  # the group name is its last copy's output


def test_last_alias_and_dim_arithmetic():
    text = BASE.replace("inputs: [blocks], vocab_size: vocab", "inputs: [blocks.last.norm], vocab_size: vocab * 2 - 50")
    by = {n.name: n for n in load_spec(text).nodes}
    assert by["head"].inputs == ["blocks.2.norm"]
    assert by["head"].params["vocab_size"] == 50


def test_vary_gives_each_copy_its_own_value_and_i_is_available():
    text = BASE.replace("    inputs: {x: emb}\n", "    inputs: {x: emb}\n    vary: {e: [1, 2, 3]}\n").replace(
        "{name: norm, type: rms_norm, inputs: [x]}", "{name: norm, type: rms_norm, inputs: [x], eps: e * 10 + i}")
    eps = [n.params["eps"] for n in load_spec(text).nodes if n.type == "rms_norm"]
    assert eps == [10, 21, 32]


def test_dims_may_refer_to_other_dims_in_any_order():
    text = BASE.replace("dims: {d: 32,", "dims: {half: d // 2, d: 32,").replace("dim: d}", "dim: half}")
    assert load_spec(text).nodes[0].params["dim"] == 16


def test_shipped_specs_load_by_name():
    assert {"xlstm_7b", "xlstm_tiny", "xlstm_parallel_heads"} <= set(shipped_specs())
    spec = load_spec("xlstm_7b")
    assert spec.groups == {"backbone.blocks.{i}": 32}
    assert len([n for n in spec.nodes if n.type == "mlstm"]) == 32


@pytest.mark.parametrize(
    "mutate, line, field, fragment, hint",
    [
        (lambda t: t.replace("inputs: [tokens], num", "inputs: [tokns], num"), 5, "inputs", "'tokns' names no node", "did you mean 'tokens'?"),
        (lambda t: t.replace("inputs: [x, norm]", "inputs: [x, nrom]"), 11, "inputs", "'nrom' names no node", "did you mean 'norm'?"),
        (lambda t: t + "colour: blue\n", 14, "colour", "unknown key 'colour'", "allowed keys"),
        (lambda t: t.replace("outputs: [head]\n", ""), None, "outputs", "required key is missing", None),
        (lambda t: t.replace("outputs: [head]", "outputs: [haed]"), 13, "outputs", "'haed' names no node", "did you mean 'head'?"),
        (lambda t: t.replace("repeat: depth", "repeat: dpth"), 6, "repeat", "positive integer", "did you mean 'depth'?"),
        (lambda t: t.replace("name: blocks.{i}", "name: blocks"), 7, "name", "must contain {i}", None),
        (lambda t: t.replace("    inputs: {x: emb}\n", "    inputs: {x: emb}\n    vary: {e: [1, 2]}\n"), 9, "vary.e", "2 values but repeat is 3", None),
        (lambda t: t.replace("dims: {d: 32,", "dims: {a: b + 1, b: a + 1, d: 32,"), 2, "dims", "cycle", None),
        (lambda t: t.replace("- {name: norm, type: rms_norm, inputs: [x]}", "- {type: rms_norm, inputs: [x]}"), 10, "name", "required key", None),
    ],
)
def test_spec_errors_name_line_field_and_hint(mutate, line, field, fragment, hint):
    err = error_of(mutate(BASE))
    issue = err.first
    assert fragment in issue.message
    assert issue.field == field
    if line is not None:
        assert issue.line == line
    if hint is not None:
        assert hint in (issue.hint or "")


def test_duplicate_names_point_at_both_definitions():
    text = BASE.replace("  - {name: head, type: lm_head", "  - {name: emb, type: rms_norm, inputs: [emb]}\n  - {name: head, type: lm_head")
    err = error_of(text)
    assert err.node == "emb" and err.field == "name" and err.line == 12
    assert "first defined at line 5" in err.message


def test_bad_yaml_reports_the_line():
    err = error_of("name: t\nnodes:\n  - {name: a, type: [\noutputs: [a]\n")
    assert "not valid YAML" in err.message and err.line is not None


def test_all_problems_are_reported_at_once_and_formatted_with_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(BASE.replace("inputs: [tokens], num", "inputs: [tokns], num").replace("outputs: [head]", "outputs: [haed]"))
    err = error_of(str(path))
    assert len(err.issues) == 2
    text = str(err)
    assert text.startswith("2 problems")
    assert f"{path}:5: node 'emb', field 'inputs'" in text


def test_unknown_spec_name_lists_shipped_specs():
    err = error_of("xlstm_tny")
    assert "xlstm_tiny" in err.hint


def test_missing_file_is_a_spec_error(tmp_path):
    err = error_of(str(tmp_path / "nope.yaml"))
    assert "not found" in err.message
