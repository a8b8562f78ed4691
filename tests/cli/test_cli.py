"""The command line: each command prints what it promises and fails with a clear message."""
import json
import subprocess
import sys

import pytest

from xlstm_metal.cli import main


def run_cli(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_schema_is_json_schema_covering_every_block_type(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "schema")
    assert code == 0
    schema = json.loads(out)
    text = json.dumps(schema)
    for t in ("embedding", "rms_norm", "multihead_layer_norm", "mlstm", "swiglu", "add", "lm_head"):
        assert f'"const": "{t}"' in text
    assert "num_heads" in text and "repeat" in text
    path = tmp_path / "s.json"
    assert run_cli(capsys, "schema", "-o", str(path))[0] == 0
    assert json.loads(path.read_text()) == schema


def test_schema_accepts_the_shipped_specs(capsys):
    jsonschema = pytest.importorskip("jsonschema")
    import yaml

    from xlstm_metal.spec import shipped_spec_path
    from xlstm_metal.spec.schema import spec_json_schema

    schema = spec_json_schema()
    for name in ("xlstm_7b", "xlstm_tiny", "xlstm_parallel_heads"):
        jsonschema.validate(yaml.safe_load(shipped_spec_path(name).read_text()), schema)


def test_plan_prints_a_table_mermaid_dot_and_json(capsys):
    code, out, _ = run_cli(capsys, "plan", "xlstm_7b", "--seq-len", "4096", "--dtype", "bfloat16")
    assert code == 0 and "ExecutionPlan for 'xlstm-7b'" in out and "parameters: 6,865,424,896" in out
    assert run_cli(capsys, "plan", "xlstm_tiny", "--format", "mermaid")[1].startswith("flowchart TD")
    assert run_cli(capsys, "plan", "xlstm_tiny", "--format", "dot")[1].startswith("digraph")
    plan = json.loads(run_cli(capsys, "plan", "xlstm_tiny", "--seq-len", "1", "--format", "json")[1])
    assert {s["form"] for s in plan["steps"] if s["kernel"]} == {"step"}


def test_a_bad_spec_exits_2_with_the_spec_error(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nnodes:\n  - {name: a, type: embeding, inputs: [tokens]}\noutputs: [a]\n")
    code, out, err = run_cli(capsys, "plan", str(bad))
    assert code == 2
    assert f"{bad}:3: node 'a', field 'type': unknown block type 'embeding'" in err
    assert "did you mean 'embedding'?" in err
    assert "Traceback" not in err


def test_run_builds_and_generates(capsys):
    code, out, _ = run_cli(capsys, "run", "xlstm_tiny", "--tokens", "1,2,3", "--max-tokens", "4")
    assert code == 0 and "generated [" in out and "decode" in out


def test_specs_lists_shipped_specs(capsys):
    out = run_cli(capsys, "specs")[1]
    assert "xlstm_7b" in out and "xlstm_tiny" in out


def test_console_script_is_installed():
    res = subprocess.run([sys.executable, "-m", "xlstm_metal.cli", "specs"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "xlstm_parallel_heads" in res.stdout
