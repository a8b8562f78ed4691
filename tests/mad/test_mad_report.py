"""MAD scores: the best run of each setting's learning-rate x weight-decay grid, averaged over a task's settings;
comparable with published scores only when made of the whole protocol; a chart when matplotlib is there."""
import sys

import pytest

from xlstm_metal.mad import best_of, mad_scores, task_settings, write_report
from xlstm_metal.mad.report import comparable
from xlstm_metal.mad.settings import LEARNING_RATES, WEIGHT_DECAYS


def record(spec, task, setting, lr, acc, wd=0.0, protocol_run=False):
    return {"key": f"{spec}{task}{setting}{lr}{wd}", "spec": spec, "task": task, "setting": setting, "lr": lr,
            "weight_decay": wd, "test_accuracy": acc, "parameters": 10, "protocol_run": protocol_run, "budget": {}}


def test_scores_are_comparable_only_over_every_setting_and_the_whole_grid():
    full = [record("a", "memorization", s.label(), lr, 0.5, wd, True) for s in task_settings("memorization")
            for lr in LEARNING_RATES for wd in WEIGHT_DECAYS]
    assert len(full) == 36 and comparable(full)
    assert not comparable(full[1:]), "a missing grid point"
    assert not comparable([r for r in full if r["setting"] != "baseline"]), "a missing setting"
    assert not comparable(full[:-1] + [dict(full[-1], protocol_run=False)]), "a run off the recipe"


def test_best_of_the_grid_then_the_mean_over_settings():
    runs = [record("a", "recall", "baseline", 1e-3, 0.2), record("a", "recall", "baseline", 1e-4, 0.9),
            record("a", "recall", "seq_len=256", 1e-3, 0.5), record("a", "recall", "seq_len=256", 1e-4, 0.1),
            record("a", "copy", "baseline", 1e-3, 0.4), record("b", "recall", "baseline", 1e-3, 0.3)]
    best = {(r["spec"], r["task"], r["setting"]): r["test_accuracy"] for r in best_of(runs)}
    assert best == {("a", "recall", "baseline"): 0.9, ("a", "recall", "seq_len=256"): 0.5,
                    ("a", "copy", "baseline"): 0.4, ("b", "recall", "baseline"): 0.3}
    scores = mad_scores(runs)
    assert scores["a"] == pytest.approx({"recall": 0.7, "copy": 0.4, "mean": 0.55})
    assert scores["b"] == pytest.approx({"recall": 0.3, "mean": 0.3})


def test_without_matplotlib_the_chart_is_skipped_with_a_notice(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    notices = write_report([record("a", "memorization", "baseline", 1e-3, 0.5)], tmp_path)
    assert notices and "matplotlib" in notices[0]
    assert (tmp_path / "mad.json").exists() and (tmp_path / "mad.txt").exists() and not (tmp_path / "mad.png").exists()


def grid_runs(spec, setting, accs, task="memorization"):
    return [record(spec, task, setting, lr, acc, wd) for (lr, wd), acc in zip([(1e-3, 0.0), (5e-4, 0.0)], accs)]


def test_the_markdown_table_compares_only_settings_every_spec_finished_over_the_whole_grid():
    from xlstm_metal.mad import complete_cells, markdown

    runs = (grid_runs("a", "baseline", [0.5, 0.9]) + grid_runs("b", "baseline", [0.4, 0.2])
            + grid_runs("a", "vocab_size=512", [0.1, 0.1]) + grid_runs("b", "vocab_size=512", [0.3])[:1])
    kept, left_out = complete_cells(runs)
    assert left_out == [("memorization", "vocab_size=512")] and len(kept) == 4
    text = markdown(runs, {"MHA": {"memorization": 0.75, "mean": 0.7}, "Mamba": {"mean": 0.6}})
    lines = text.splitlines()
    assert lines[0] == "| task (settings) | `a` | `b` | MHA (paper) | Mamba (paper) |"
    assert "| memorization (1) | 0.900 | 0.400 | 0.750 | — |" in lines
    assert "| **MAD score (mean)** | 0.900 | 0.400 | 0.700 | 0.600 |" in lines
    assert "not comparable" in text and "Left out" in text and "memorization vocab_size=512" in text


def test_the_markdown_table_says_when_nothing_is_comparable_yet():
    from xlstm_metal.mad import markdown

    assert "nothing to compare yet" in markdown(grid_runs("a", "baseline", [0.5])[:1] + grid_runs("b", "x", [0.1]))
