"""MAD tasks are well-formed and learnable; the mad command tabulates architectures × tasks."""
import json

import numpy as np
import pytest

from xlstm_metal.cli import main
from xlstm_metal.mad import MadBudget, run_task
from xlstm_metal.mad.tasks import IGNORE, TASKS


@pytest.mark.parametrize("name", list(TASKS))
def test_tasks_are_seeded_in_vocab_and_scored_somewhere(name):
    t = TASKS[name]
    x, y = t.make(8, seq_len=t.seq_len, seed=3)
    x2, y2 = t.make(8, seq_len=t.seq_len, seed=3)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    assert x.shape == y.shape == (8, t.seq_len)
    assert x.min() >= 0 and x.max() < t.vocab_size
    scored = y != IGNORE
    assert scored.any() and y[scored].max() < t.vocab_size
    assert not np.array_equal(x, t.make(8, seq_len=t.seq_len, seed=4)[0])


def test_recall_targets_are_the_values_of_keys_seen_before():
    x, y = TASKS["in_context_recall"].make(4, seq_len=64, seed=0)
    for row_x, row_y in zip(x, y):
        seen = {}
        for t in range(0, 63, 2):
            k, v = row_x[t], row_x[t + 1]
            if k in seen:
                assert row_y[t] == v == seen[k]
            else:
                assert row_y[t] == IGNORE
            seen[k] = v


def test_a_hybrid_with_attention_learns_recall():
    r = run_task("hybrid_mlstm_attention", "in_context_recall", MadBudget(steps=60, batch_size=16, seq_len=32, n_train=512, n_test=64))
    assert r.accuracy > 0.5  # chance is 1/8


def test_mad_command_writes_table_json_and_image(tmp_path, capsys):
    code = main(["mad", "xlstm_mad", "attention_baseline", "--tasks", "compression,memorization", "--steps", "3",
                 "--batch-size", "4", "--seq-len", "16", "--n-train", "32", "--out", str(tmp_path)])
    assert code == 0
    out = capsys.readouterr().out
    assert "xlstm-mad" in out and "attention-baseline" in out and "compression" in out and "parameters" in out
    data = json.loads((tmp_path / "mad.json").read_text())
    assert len(data) == 4 and all(0 <= d["accuracy"] <= 1 for d in data)
    assert (tmp_path / "mad.svg").read_text().startswith("<svg")
