"""Reliability: any broken spec raises SpecError naming what to fix — never another exception, never a hang.

Besides mutations of valid specs, the shipped spec files themselves are damaged the way files get damaged
(truncated, bits flipped, random bytes written over or into them) and fed to the loader and to ``xlstm-metal
plan``: each is either a valid spec or one of our input errors, found quickly and with little memory."""
import contextlib
import io
import string
import tempfile
import time
import tracemalloc
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from xlstm_metal import SpecError, build_graph
from xlstm_metal.cli import main
from xlstm_metal.errors import InputError
from xlstm_metal.spec import load_spec, shipped_spec_path, shipped_specs
from budget import examples
from xlstm_metal.testing.strategies import invalid_specs


@given(case=invalid_specs())
@settings(max_examples=examples(200, 10_000))
def test_every_mutated_spec_raises_a_located_spec_error(case):
    spec, kind = case
    try:
        build_graph(spec, materialize=False)
    except SpecError as err:
        for issue in err.issues:
            assert issue.message
            # every issue says where: a node/field, or a line (YAML syntax), or the whole document
            assert issue.node or issue.field or issue.line or kind in ("not_a_mapping",), (kind, str(err))
        assert "Traceback" not in str(err)
    else:
        raise AssertionError(f"mutation {kind!r} was accepted: {spec!r}"[:2000])


@given(text=st.text(alphabet=string.printable + "äé→{}[]:-#&*!|>'\"", max_size=300))
@settings(max_examples=examples(200, 5_000))
def test_arbitrary_text_never_escapes_as_another_exception(text):
    try:
        build_graph(load_spec(text + "\n"), materialize=False)
    except SpecError:
        pass


@st.composite
def damaged_spec_files(draw) -> tuple[bytes, str]:
    """The bytes of a shipped spec, damaged one way, and how."""
    data = bytearray(shipped_spec_path(draw(st.sampled_from(shipped_specs()))).read_bytes())
    kind = draw(st.sampled_from(["truncate", "bit_flips", "overwrite", "insert", "random"]))
    if kind == "truncate":
        del data[draw(st.integers(0, len(data))):]
    elif kind == "bit_flips":
        for _ in range(draw(st.integers(1, 8))):
            at = draw(st.integers(0, len(data) - 1))
            data[at] ^= 1 << draw(st.integers(0, 7))
    elif kind in ("overwrite", "insert"):
        at, junk = draw(st.integers(0, len(data))), draw(st.binary(min_size=1, max_size=64))
        data[at:at + (len(junk) if kind == "overwrite" else 0)] = junk
    else:
        data = bytearray(draw(st.binary(max_size=2048)))
    return bytes(data), kind


def bounded(fn, seconds: float = 20.0, megabytes: float = 200.0):
    """``fn()``, checking it took at most ``seconds`` and ``megabytes`` of Python allocations."""
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        return fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert time.perf_counter() - t0 < seconds
        assert peak < megabytes * 2**20, f"peak {peak / 2**20:.0f} MB"


@contextlib.contextmanager
def damaged_file(data: bytes):
    """``data`` written to a spec file in a fresh temporary directory (removed afterwards)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "damaged.yaml"
        path.write_bytes(data)
        yield path


@given(case=damaged_spec_files())
@settings(max_examples=examples(40, 3_000))
def test_damaged_spec_files_give_only_our_errors(case):
    data, kind = case
    with damaged_file(data) as path:

        def load():
            graph = build_graph(path)
            graph.lint()
            graph.memory_issue("bfloat16")

        try:
            bounded(load)
        except InputError as err:
            assert str(path) in str(err).split("\n")[0] or isinstance(err, SpecError) and err.file is None, \
                (kind, str(err))
            assert "Traceback" not in str(err)


@given(case=damaged_spec_files())
@settings(max_examples=examples(25, 1_000))
def test_plan_on_damaged_spec_files_prints_a_plan_or_one_error(case):
    data, kind = case
    with damaged_file(data) as path:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = bounded(lambda: main(["plan", str(path), "--seq-len", "64"]))
        text = err.getvalue()
        assert "Traceback" not in text
        if code == 0:
            assert out.getvalue().startswith("ExecutionPlan for ")
            assert all(line.startswith("warning: ") for line in text.splitlines()), text
        else:
            assert code == 2 and out.getvalue() == "", (kind, code, text)
            assert text.startswith("error: ") and str(path) in text.split("\n")[0], (kind, text)
