"""Several processes share one sweep: each run is claimed before it trains, so every run is made exactly once;
a run whose process died (killed mid-training) is made again by the next sweep; a time limit stops the sweep
between epochs and records only what finished."""
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from types import SimpleNamespace

import pytest

from xlstm_metal.mad import Budget, MadDataError, read_runs, run_sweep
from xlstm_metal.mad import sweep
from xlstm_metal.mad.claims import CLAIMS_DIR, try_claim
from xlstm_metal.mad.sweep import RUNS_FILE, plan_runs

FOUR = Budget(epochs=1, settings=0.01, examples=0.02, learning_rates=(1e-3, 5e-4), weight_decays=(0.0, 0.1),
              width=16)


def keys_in_file(out):
    return Counter(r["key"] for r in read_runs(out))


def test_two_workers_finish_the_plan_with_each_run_made_once(tmp_path):
    lines = []
    runs = run_sweep(["attention_baseline"], ["memorization"], FOUR, tmp_path, workers=2, progress=lines.append)
    planned = {r.key for r in plan_runs(["attention_baseline"], ["memorization"], FOUR)}
    assert len(planned) == 4 and {r["key"] for r in runs} == planned
    assert keys_in_file(tmp_path) == Counter({k: 1 for k in planned})
    assert "2 workers" in lines[0] and sum("accuracy" in line for line in lines) == 4
    assert all(line.startswith(("w0 ", "w1 ")) for line in lines[1:])
    assert not list((tmp_path / CLAIMS_DIR).iterdir()), "every claim is released"


def test_a_run_another_process_is_making_is_left_to_it(tmp_path):
    first = plan_runs(["attention_baseline"], ["memorization"], FOUR)[0]
    claim = try_claim(tmp_path, first.key)
    assert claim is not None and try_claim(tmp_path, first.key) is None, "one claim at a time"
    runs = run_sweep(["attention_baseline"], ["memorization"], FOUR, tmp_path, progress=lambda line: None)
    assert len(runs) == 3 and first.key not in keys_in_file(tmp_path)
    claim.release()
    lines = []
    run_sweep(["attention_baseline"], ["memorization"], FOUR, tmp_path, progress=lines.append)
    assert "3 already done" in lines[0] and keys_in_file(tmp_path)[first.key] == 1 and len(keys_in_file(tmp_path)) == 4


SLOW = Budget(epochs=400, settings=0.01, examples=0.02, learning_rates=(1e-9,), weight_decays=(0.0,), width=16)


def test_a_run_killed_while_training_is_made_by_the_next_sweep(tmp_path):
    code = ("import sys; from xlstm_metal.mad import Budget, run_sweep; "
            f"run_sweep(['attention_baseline'], ['memorization'], Budget(**{SLOW.__dict__!r}), sys.argv[1])")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.DEVNULL)
    claims = tmp_path / CLAIMS_DIR
    t0 = time.time()
    while not (claims.is_dir() and any(claims.iterdir())):
        assert proc.poll() is None and time.time() - t0 < 120, "the sweep never claimed its run"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert read_runs(tmp_path) == [], "killed mid-run: nothing recorded"
    (run,) = run_sweep(["attention_baseline"], ["memorization"], SLOW, tmp_path, progress=lambda line: None)
    assert run["epochs"] == 400 and keys_in_file(tmp_path) == Counter({run["key"]: 1})


def test_a_time_limit_drops_the_run_in_flight_and_says_how_to_go_on(tmp_path, monkeypatch):
    clock = iter([0.0, 0.0] + [100.0] * 1000)  # the limit passes during the first run's first epoch
    monkeypatch.setattr(sweep, "time", SimpleNamespace(time=lambda: next(clock)))
    lines = []
    runs = run_sweep(["attention_baseline"], ["memorization"], FOUR, tmp_path, time_limit=10, progress=lines.append)
    assert runs == [] and not (tmp_path / RUNS_FILE).exists()
    assert "time limit (10s) reached: 0 of 4 runs recorded" in lines[-1]
    assert not list((tmp_path / CLAIMS_DIR).iterdir())
    monkeypatch.undo()
    assert len(run_sweep(["attention_baseline"], ["memorization"], FOUR, tmp_path, progress=lambda line: None)) == 4


def test_a_plan_cut_short_holds_every_tasks_baseline_first():
    budget = Budget(epochs=1, settings=0.3, learning_rates=(1e-3,), weight_decays=(0.0,))
    runs = plan_runs(["attention_baseline", "xlstm_mad"], ["in_context_recall", "memorization"], budget)
    rank = [budget.task_settings(r.setting.task).index(r.setting) for r in runs]
    assert rank == sorted(rank) and rank.count(0) == 4, "every task's baseline (for each spec), then the next"
    assert [(r.setting.task, r.spec_name) for r in runs[:4]] == [
        ("in_context_recall", "attention-baseline"), ("in_context_recall", "xlstm-mad"),
        ("memorization", "attention-baseline"), ("memorization", "xlstm-mad")]
    assert len({r.key for r in runs}) == len(runs) == (3 + 2) * 2, "3 of 11 settings and 2 of 6, each spec once"


def test_an_error_in_a_worker_reaches_the_caller_as_itself(tmp_path):
    setting = plan_runs(["attention_baseline"], ["memorization"], FOUR)[0].setting
    broken = tmp_path / "data" / setting.dir_name() / "train"
    broken.mkdir(parents=True)
    (broken / "inputs.npy").write_text("not an array")
    with pytest.raises(MadDataError, match="inputs.npy: not a readable .npy array"):
        run_sweep(["attention_baseline"], ["memorization"], FOUR, tmp_path / "out", data_dir=tmp_path / "data",
                  workers=2, progress=lambda line: None)
    assert read_runs(tmp_path / "out") == []
