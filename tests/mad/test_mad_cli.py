"""``xlstm-metal mad``: documents the protocol, runs a budget labelled as such, writes mad-lab's data layout,
and answers bad input in one line (spec errors with file and line)."""
import json

import pytest

from xlstm_metal.cli import main

TINY = ["--tasks", "memorization", "--epochs", "1", "--settings", "0.01", "--examples", "0.02", "--lr", "1e-3",
        "--wd", "0", "--width", "16"]


def test_help_says_how_to_run_the_protocol(capsys):
    with pytest.raises(SystemExit):
        main(["mad", "--help"])
    text = capsys.readouterr().out
    for words in ("396 runs", "--budget", "NOT comparable", "zenodo", "--data-only", "resumable", "GPU"):
        assert words in text


def test_a_budget_run_writes_json_table_and_says_it_is_not_the_protocol(tmp_path, capsys):
    assert main(["mad", "attention_baseline", *TINY, "--out", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "REDUCED BUDGET" in captured.out and "attention-baseline" in captured.out
    assert "[1/1] attention-baseline memorization" in captured.err
    assert json.loads((tmp_path / "mad.json").read_text())["protocol_comparable"] is False
    assert (tmp_path / "mad.png").read_bytes()[:4] == b"\x89PNG"


def test_data_only_writes_mad_labs_layout(tmp_path):
    assert main(["mad", *TINY, "--data", str(tmp_path), "--data-only"]) == 0
    (setting,) = list(tmp_path.iterdir())
    assert setting.name.startswith("t-M_vs-256_sl-32_ntr-5_nte-26_")
    assert {p.relative_to(setting).as_posix() for p in setting.rglob("*.npy")} == {
        "train/inputs.npy", "train/targets.npy", "test/inputs.npy", "test/targets.npy"}


def test_spec_errors_name_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ninputs: [tokens]\nnodes:\n  - {name: e, type: embeddingg, inputs: [tokens]}\n"
                   "outputs: [e]\n")
    assert main(["mad", str(bad), *TINY, "--out", str(tmp_path / "o")]) == 2
    assert f"{bad}:4" in capsys.readouterr().err


@pytest.mark.parametrize("args, message, code", [(["--settings", "2"], "argument --settings", 2),
                                                 (["--epochs", "0"], "argument --epochs", 2),
                                                 (["--tasks", "recal"], "unknown MAD task", 1),
                                                 ([], "at least one spec", 1)])
def test_bad_options_are_one_line_errors(tmp_path, capsys, args, message, code):
    specs = [] if not args else ["attention_baseline"]
    try:
        got = main(["mad", *specs, *args, "--out", str(tmp_path)])
    except SystemExit as exc:  # argparse refuses a bad option value itself
        got = exc.code
    err = capsys.readouterr().err
    assert got == code and message in err and err.count("\n") == 1


def test_an_interrupt_says_how_to_resume(tmp_path, capsys, monkeypatch):
    import xlstm_metal.mad as mad

    def interrupted(*args, **kw):
        raise KeyboardInterrupt
    monkeypatch.setattr(mad, "run_sweep", interrupted)
    assert main(["mad", "attention_baseline", *TINY, "--out", str(tmp_path)]) == 130
    assert "the same command resumes" in capsys.readouterr().err


def test_workers_and_a_time_limit_from_the_command_line(tmp_path, capsys):
    args = ["mad", "attention_baseline", *TINY[:-6], "--lr", "1e-3", "5e-4", "--wd", "0", "--width", "16", "--out", str(tmp_path)]
    assert main([*args, "--time-limit", "1e-9"]) == 0
    assert "nothing to report" in capsys.readouterr().err and not (tmp_path / "runs.jsonl").exists()
    assert main([*args, "--workers", "2"]) == 0
    err = capsys.readouterr().err
    assert "2 workers" in err and err.count("accuracy") == 2
    assert "| memorization (1) |" in (tmp_path / "mad.md").read_text()
