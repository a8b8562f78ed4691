"""Messages for bad specs: the file for unreadable bytes, one error per mistake (no cascades, no repeats per
copy), hints that never suggest the word itself, and lint findings for graphs that build but are suspicious."""
import pytest

from xlstm_metal import SpecError, build_graph
from xlstm_metal.spec import load_spec, shipped_spec_path

TINY = shipped_spec_path("xlstm_tiny").read_text()


def error_of(spec) -> SpecError:
    with pytest.raises(SpecError) as info:
        build_graph(spec, materialize=False)
    return info.value


def test_a_non_utf8_spec_file_is_named_with_its_line(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(TINY.replace("# The xLSTM-7b", "# Das xLSTM-7b für").encode("latin-1"))
    err = error_of(path)
    assert err.file == str(path) and err.line == 1 and "not UTF-8" in err.message


def test_an_unreadable_spec_path_is_a_spec_error(tmp_path):
    (tmp_path / "dir.yaml").mkdir()
    assert error_of(tmp_path / "dir.yaml").file == str(tmp_path / "dir.yaml")


def test_one_wrong_head_count_is_one_error_not_a_cascade():
    err = error_of(TINY.replace("num_heads: 4\n", "num_heads: 3\n"))
    assert len(err.issues) == 1, str(err)
    assert (err.node, err.field) == ("backbone.blocks.0.mlstm_layer", "num_heads")
    assert "None" not in str(err)


def test_a_mistake_inside_a_repeat_is_reported_once_for_all_copies():
    err = error_of(TINY.replace("proj_factor: 2.667", "proj_factor: big"))
    assert len(err.issues) == 1, str(err)
    assert err.node == "backbone.blocks.0.ffn" and "(and in 1 more copies)" in err.message


def test_a_long_list_of_problems_is_cut():
    nodes = "".join(f"  - {{name: n{k}, type: nope{k}, inputs: [tokens]}}\n" for k in range(40))
    err = error_of(f"name: x\nnodes:\n{nodes}outputs: [n0]\n")
    assert len(err.issues) == 40 and str(err).count("\n- ") == 21 and str(err).endswith("and 20 more")


@pytest.mark.parametrize("old, new, shown", [
    ("num_blocks: 2", "num_blocks: 2.5", "dim 'num_blocks' is 2.5"),
    ("chunk_size: 16", "chunk_size: 1.5", "dim 'chunk_size' is 1.5"),
])
def test_a_hint_never_suggests_the_name_that_was_written(old, new, shown):
    err = error_of(TINY.replace(old, new))
    assert len(err.issues) == 1, str(err)  # a broken repeat does not also make its users' inputs unknown
    assert err.hint == shown
    assert "did you mean" not in str(err)


def test_did_you_mean_skips_the_word_itself():
    from xlstm_metal.spec.errors import did_you_mean

    assert did_you_mean("depth", ["depth"]) is None
    assert did_you_mean("depth", ["depth", "dpeth"]) == "did you mean 'dpeth'?"


def test_lint_finds_unused_nodes_and_differing_vocabularies():
    text = TINY.replace("vocab_size: vocab_size, soft_cap", "vocab_size: 500, soft_cap").replace(
        "outputs: [lm_head]", "  - {name: spare, type: rms_norm, inputs: [backbone.out_norm]}\noutputs: [lm_head]")
    problems = build_graph(text, materialize=False).lint()
    assert problems == ["nodes that reach no output: spare",
                        "lm_head 'lm_head' has vocab_size 500 but embedding 'backbone.embeddings' has "
                        "num_embeddings 512"]
    assert build_graph("xlstm_tiny", materialize=False).lint() == []


def test_a_spec_adapted_for_mad_keeps_its_file_and_lines(tmp_path):
    from xlstm_metal.mad.model import adapt_spec

    path = tmp_path / "s.yaml"
    path.write_text(TINY.replace("num_heads: num_heads\n", "num_heads: num_hedas\n"))
    with pytest.raises(SpecError) as info:
        adapt_spec(str(path), 10, None, autoencoder=False)
    err = info.value
    assert (err.file, err.line, err.node) == (str(path), 24, "backbone.blocks.0.mlstm_layer")
    assert [n.params.get("vocab_size") for n in load_spec(adapt_spec("xlstm_tiny", 10, None, False)).nodes][-1] == 10


def test_a_node_that_fails_validation_is_not_reported_again_where_it_is_used():
    err = error_of(TINY.replace("inputs: [tokens], num_embeddings", "inputs: tokens, num_embeddings"))
    assert len(err.issues) == 1, str(err)
    assert (err.node, err.field, err.line) == ("backbone.embeddings", "inputs", 14)
