"""The sweep makes every run of a budget, records each finished run at once, and resumes after an interruption
without redoing any."""
import json
from dataclasses import replace

import pytest

from xlstm_metal.mad import Budget, mad_scores, read_runs, run_sweep, write_report
from xlstm_metal.mad.sweep import RUNS_FILE, append_run

TINY = Budget(epochs=1, settings=0.01, examples=0.02, learning_rates=(1e-3, 5e-4), weight_decays=(0.0,), width=16)


def test_a_tiny_budget_sweep_scores_and_labels_itself(tmp_path):
    lines = []
    runs = run_sweep(["attention_baseline"], ["memorization"], TINY, tmp_path, progress=lines.append)
    assert len(runs) == 2 and {r["lr"] for r in runs} == {1e-3, 5e-4}
    assert all(0 <= r["test_accuracy"] <= 1 and r["protocol_run"] is False for r in runs)
    assert "NOT comparable" in lines[0] and sum("accuracy" in line for line in lines) == 2
    score = mad_scores(runs)["attention-baseline"]["memorization"]
    assert score == max(r["test_accuracy"] for r in runs)
    write_report(runs, tmp_path)
    summary = json.loads((tmp_path / "mad.json").read_text())
    assert summary["protocol_comparable"] is False and "not comparable" in summary["note"]
    assert "not comparable" in (tmp_path / "mad.txt").read_text()


def test_an_interrupted_sweep_resumes_without_redoing_finished_runs(tmp_path):
    def stop_after_first_run(line):
        if "accuracy" in line:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        run_sweep(["attention_baseline"], ["memorization"], TINY, tmp_path, progress=stop_after_first_run)
    assert len(read_runs(tmp_path)) == 1
    lines = []
    runs = run_sweep(["attention_baseline"], ["memorization"], TINY, tmp_path, progress=lines.append)
    assert "1 already done" in lines[0] and sum("accuracy" in line for line in lines) == 1
    assert len(runs) == 2 and len({r["key"] for r in runs}) == 2
    lines.clear()
    run_sweep(["attention_baseline"], ["memorization"], TINY, tmp_path, progress=lines.append)
    assert lines == [lines[0]] and "2 already done" in lines[0]


def test_more_settings_later_reuse_the_runs_already_made(tmp_path):
    run_sweep(["attention_baseline"], ["memorization"], TINY, tmp_path, progress=lambda line: None)
    lines = []
    runs = run_sweep(["attention_baseline"], ["memorization"], replace(TINY, settings=0.34), tmp_path,
                     progress=lines.append)
    assert "4 runs (2 already done" in lines[0] and len(runs) == 4


def test_a_line_cut_short_by_a_crash_loses_nothing_after_it(tmp_path):
    (tmp_path / RUNS_FILE).write_text(json.dumps({"key": "a"}) + "\n" + '{"key": "b", "te')
    append_run(tmp_path, {"key": "c"})
    assert [r["key"] for r in read_runs(tmp_path)] == ["a", "c"]
