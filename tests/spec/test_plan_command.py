"""``xlstm-metal plan`` and ``mad`` on specs: lint and memory warnings, located errors, a quiet closed pipe."""
import subprocess
import sys

from xlstm_metal.cli import main
from xlstm_metal.spec import shipped_spec_path

TINY = shipped_spec_path("xlstm_tiny").read_text()


def run_cli(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_plan_prints_the_graphs_lint_findings(capsys, tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(TINY.replace("vocab_size: vocab_size, soft_cap", "vocab_size: 500, soft_cap"))
    code, out, err = run_cli(capsys, "plan", str(path), "--seq-len", "16")
    assert code == 0 and "ExecutionPlan" in out
    assert err == "warning: lm_head 'lm_head' has vocab_size 500 but embedding 'backbone.embeddings' has " \
                  "num_embeddings 512\n"
    assert run_cli(capsys, "plan", "xlstm_tiny", "--seq-len", "16")[2] == ""


def test_plan_warns_when_the_parameters_cannot_fit_in_memory(capsys, tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(TINY.replace("vocab_size: 512", "vocab_size: 2000000000"))
    code, _, err = run_cli(capsys, "plan", str(path), "--seq-len", "16")
    assert code == 0
    assert err.startswith(f"warning: {path}:14: node 'backbone.embeddings', field 'num_embeddings': the parameters "
                          "need 1,907.4 GiB in float32")
    assert err.count("\n") == 1


def test_plan_of_a_broken_spec_is_one_located_error(capsys, tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(TINY.replace("num_heads: 4\n", "num_heads: 3\n"))
    code, out, err = run_cli(capsys, "plan", str(path))
    assert code == 2 and out == ""
    assert err.startswith(f"error: {path}:24: node 'backbone.blocks.0.mlstm_layer', field 'num_heads': ")
    assert err.count("\n") == 1


def test_plan_into_a_closed_pipe_exits_quietly():
    proc = subprocess.Popen([sys.executable, "-m", "xlstm_metal.cli", "plan", "xlstm_7b"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.readline()
    proc.stdout.close()  # like `| head -1`
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0
    assert "Traceback" not in err and "Broken pipe" not in err and "BrokenPipe" not in err


def test_mad_reports_spec_errors_at_their_file_and_line(capsys, tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(TINY.replace("num_heads: num_heads\n", "num_heads: num_hedas\n"))
    code, _, err = run_cli(capsys, "mad", str(path), "--tasks", "in_context_recall", "--epochs", "1",
                           "--out", str(tmp_path / "out"))
    assert code == 2
    assert err.startswith(f"error: {path}:24: node 'backbone.blocks.0.mlstm_layer', field 'num_heads'")
    assert "did you mean 'num_heads'?" in err
