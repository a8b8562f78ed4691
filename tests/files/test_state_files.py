"""State files: written atomically under unique names, read completely checked, refused when they belong to
another architecture (before anything is generated), with one line that names the file."""
import json
import subprocess
import sys
import textwrap

import mlx.core as mx
import pytest

from xlstm_metal import State, xLSTMRunner
from xlstm_metal.cli import main
from xlstm_metal.errors import InputError
from xlstm_metal.state import StateError


@pytest.fixture(scope="module")
def tiny():
    return xLSTMRunner.from_spec("xlstm_tiny", seed=0)


@pytest.fixture()
def saved(tmp_path, tiny):
    _, state = tiny(mx.array([[1, 2, 3, 4]]))
    path = tmp_path / "s.safetensors"
    state.save(path)
    return path


def rewrite(path, change):
    arrays, meta = mx.load(str(path), return_metadata=True)
    arrays, meta = change(dict(arrays), dict(meta))
    mx.save_safetensors(str(path), arrays, metadata=meta)


def test_a_saved_state_records_its_architecture_and_loads_for_it(saved, tiny):
    state = State.load(saved, graph=tiny.graph)
    assert state.metadata["architecture"]["name"] == "xlstm-tiny" and state.tokens_seen == 4
    assert [p.name for p in saved.parent.iterdir()] == ["s.safetensors"]  # no temporary left behind


def test_a_state_of_another_architecture_is_refused_naming_both(saved, tiny):
    other = xLSTMRunner.from_spec("xlstm_parallel_heads", seed=0)
    with pytest.raises(StateError) as info:
        State.load(saved, graph=other.graph)
    msg = str(info.value)
    assert str(saved) in msg and "'xlstm-tiny'" in msg and "'xlstm-parallel-heads'" in msg and "\n" not in msg
    with pytest.raises(StateError, match="'xlstm-tiny'.*'xlstm-parallel-heads'"):  # the Python API refuses it too
        other(mx.array([[1, 2]]), State.load(saved))


def test_the_cli_refuses_a_foreign_state_before_generating(saved, capsys):
    code = main(["generate", "--spec", "xlstm_parallel_heads", "--prompt", "1,2,3", "--max-tokens", "3",
                 "--state-in", str(saved)])
    out = capsys.readouterr()
    assert code == 1 and out.out == "" and out.err.count("\n") == 1 and "'xlstm-tiny'" in out.err


@pytest.mark.parametrize("change, fragment", [
    (lambda a, m: ({k: v for k, v in a.items() if not k.endswith(".0")}, m), "partial or damaged: arrays missing"),
    (lambda a, m: ({k: v.astype(mx.int32) for k, v in a.items()}, m), "is I32; a state holds float arrays"),
    (lambda a, m: ({k: v * float("nan") for k, v in a.items()}, m), "holds NaN or Inf values"),
    (lambda a, m: (a, dict(m, format="something/else")), "is not an xlstm_metal state file"),
    (lambda a, m: (a, dict(m, nodes="{not json")), "metadata 'nodes' is not valid JSON"),
    (lambda a, m: (a, dict(m, nodes='{"x": "three"}')), "metadata 'nodes' must map node names to array counts"),
    (lambda a, m: (a, dict(m, tokens_seen="-3")), "'tokens_seen' = '-3'"),
    (lambda a, m: (a, {k: v for k, v in m.items() if k != "nodes"}), "metadata lacks 'nodes'"),
])
def test_damaged_partial_and_foreign_state_files_are_refused(saved, change, fragment):
    rewrite(saved, change)
    with pytest.raises(StateError) as info:
        State.load(saved)
    assert fragment in str(info.value) and str(saved) in str(info.value)


def test_a_state_without_some_of_the_models_nodes_is_refused(saved, tiny):
    def drop_a_node(arrays, meta):
        nodes = json.loads(meta["nodes"])
        gone = sorted(nodes)[0]
        del nodes[gone]
        return {k: v for k, v in arrays.items() if not k.startswith(gone + ".")}, dict(meta, nodes=json.dumps(nodes))

    rewrite(saved, drop_a_node)
    with pytest.raises(StateError, match="does not fit the model 'xlstm-tiny'.*nodes missing: backbone.blocks.0"):
        State.load(saved, graph=tiny.graph)


def test_a_state_of_wrong_shapes_for_this_model_is_refused(saved, tiny):
    rewrite(saved, lambda a, m: ({k: v[..., :1] for k, v in a.items()},
                                 dict(m, metadata=json.dumps({}))))  # no architecture recorded: shapes decide
    with pytest.raises(StateError, match="holds arrays of shapes"):
        State.load(saved, graph=tiny.graph)


@pytest.mark.parametrize("content", [b"", b"\x00" * 7, b"\xff" * 64])
def test_empty_and_truncated_state_files_are_one_line(tmp_path, content):
    path = tmp_path / "s.safetensors"
    path.write_bytes(content)
    with pytest.raises(StateError, match=str(path)):
        State.load(path)


def test_a_writer_that_interleaves_with_another_neither_fails_nor_tears_the_file(saved, tmp_path, monkeypatch):
    first, second = State.load(saved), State.load(saved)
    first.tokens_seen, second.tokens_seen = 111, 222
    real, calls = mx.save_safetensors, []

    def save_then_let_the_other_writer_run(path, arrays, metadata=None):
        real(path, arrays, metadata=metadata)
        calls.append(path)
        if len(calls) == 1:  # the second writer saves completely between the first one's write and rename
            second.save(saved)

    monkeypatch.setattr(mx, "save_safetensors", save_then_let_the_other_writer_run)
    first.save(saved)
    assert calls[0] != calls[1]  # two temporaries, not one shared name
    assert State.load(saved).tokens_seen == 111  # the last rename wins, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.safetensors"]


def test_two_processes_saving_one_state_file_never_fail_or_tear_it(saved, tmp_path):
    writer = textwrap.dedent("""
        import sys
        from xlstm_metal import State
        state = State.load(sys.argv[1])
        state.tokens_seen = int(sys.argv[2])
        for _ in range(40):
            state.save(sys.argv[1])
    """)
    procs = [subprocess.Popen([sys.executable, "-c", writer, str(saved), str(n)], stderr=subprocess.PIPE, text=True)
             for n in (111, 222)]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    assert all(code == 0 for code, _ in results), results
    assert State.load(saved).tokens_seen in (111, 222)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.safetensors"]


def test_saving_where_no_file_can_be_is_one_line(saved, tmp_path):
    state = State.load(saved)
    with pytest.raises(InputError, match="is a directory; give a file name"):
        state.save(tmp_path)
    with pytest.raises(InputError, match="the directory .*nowhere does not exist"):
        state.save(tmp_path / "nowhere" / "s.safetensors")
