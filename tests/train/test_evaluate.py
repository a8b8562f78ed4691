"""``evaluate``: a model's loss on text, every token after the first predicted once, in training-size windows."""
import json
import math

import mlx.core as mx
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from budget import examples
from test_training import SPEC, cli_run_inputs
from xlstm_metal import xLSTMRunner
from xlstm_metal.cli import main
from xlstm_metal.train.evaluate import stream_loss

RUNNER = xLSTMRunner.from_spec(SPEC, seed=3)


def one_by_one(ids, seq_len):
    """The loss of every token after the first, each window of seq_len + 1 tokens run alone."""
    losses = []
    for s in range(0, len(ids) - 1, seq_len):
        w = ids[s:s + seq_len + 1]
        logits = RUNNER(w[None, :-1])[0][0].astype(mx.float32)
        logp = np.array(logits - mx.logsumexp(logits, axis=-1, keepdims=True))
        losses += [-logp[i, t] for i, t in enumerate(w[1:])]
    return losses


@settings(max_examples=examples(10), deadline=None)
@given(st.integers(2, 90), st.sampled_from([4, 8, 16]), st.integers(1, 5), st.integers(0, 2 ** 16))
def test_each_token_after_the_first_is_predicted_once_whatever_the_batching(n, seq_len, batch, seed):
    ids = np.random.default_rng(seed).integers(0, 40, size=n).astype(np.int32)
    got = stream_loss(RUNNER, ids, characters=3 * n, seq_len=seq_len, batch_size=batch)
    want = one_by_one(ids, seq_len)
    assert got.predicted == n - 1 == len(want)
    assert abs(got.loss - np.mean(want)) < 1e-4 * max(1.0, abs(np.mean(want)))
    assert math.isclose(got.bits_per_character, got.loss * n / (3 * n) / math.log(2))


def test_evaluate_measures_a_trained_model_on_the_files_train_held_out(tmp_path, capsys):
    spec, data = cli_run_inputs(tmp_path)
    for i in range(60):  # enough files for whole ones to be held out
        (data / f"m{i}.py").write_text(f"def f{i}(x):\n    return x * {i} + {i * 7 % 11}\n")
    out = tmp_path / "m"
    assert main(["train", str(spec), "--data", str(data), "--out", str(out), "--steps", "4", "--batch-size", "2",
                 "--seq-len", "8"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--model", str(out), str(out), "--data", str(data), "--held-out", "--json",
                 "--seq-len", "8"]) == 0
    held, again = map(json.loads, capsys.readouterr().out.splitlines())
    assert held == again  # each model on the same text
    assert main(["evaluate", "--model", str(out), "--data", str(data), "--json", "--seq-len", "8"]) == 0
    every = json.loads(capsys.readouterr().out)
    assert 1 <= held["files"] < every["files"] and held["tokens"] < every["tokens"]
    assert 0 < held["loss"] < 2 * math.log(300) and held["bits_per_character"] > 0
