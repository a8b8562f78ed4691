"""Reliability: any broken spec raises SpecError naming what to fix — never another exception, never a hang."""
import string

from hypothesis import given, settings
from hypothesis import strategies as st

from xlstm_metal import SpecError, build_graph
from xlstm_metal.spec import load_spec
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
