"""Token ids are checked against the model's vocabulary before MLX sees them: an id outside the embedding table is
a one-line TokenIdError at every public entry point, never a read outside the table (or a crash)."""
import json
import subprocess
import sys

import mlx.core as mx
import numpy as np
import pytest
from budget import examples
from hypothesis import given, settings, strategies as st

from xlstm_metal import xLSTMRunner
from xlstm_metal.errors import InputError
from xlstm_metal.token_ids import TokenIdError
from xlstm_metal.train import TokenBatches, TrainConfig, Trainer

VOCAB = 40


def spec(lm_head_vocab=VOCAB):
    return {"name": "ids", "dims": {"d": 16},
            "nodes": [{"name": "emb", "type": "embedding", "inputs": ["tokens"], "num_embeddings": VOCAB, "dim": "d"},
                      {"name": "norm", "type": "rms_norm", "inputs": ["emb"]},
                      {"name": "mlstm", "type": "mlstm", "inputs": ["norm"], "num_heads": 2, "chunk_size": 4},
                      {"name": "lm_head", "type": "lm_head", "inputs": ["mlstm"], "vocab_size": lm_head_vocab}],
            "outputs": ["lm_head"]}


@pytest.fixture(scope="module")
def runner():
    return xLSTMRunner.from_spec(spec(), seed=0)


ENTRY_POINTS = {
    "call": lambda r, ids: r(ids),
    "call_mx_array": lambda r, ids: r(mx.array(np.asarray(ids, dtype=np.int64)).astype(mx.int32)),
    "call_batch": lambda r, ids: r([ids, ids]),
    "prefill": lambda r, ids: r.prefill(ids),
    "generate": lambda r, ids: r.generate(ids, max_tokens=2),
    "stream": lambda r, ids: list(r.stream(ids, max_tokens=2)),
    "batch_generate": lambda r, ids: r.batch_generate([[1, 2], ids], max_tokens=2),
}


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@pytest.mark.parametrize("bad", [VOCAB, -1, 100_000_000, 2 ** 40])
def test_every_entry_point_refuses_an_id_outside_the_vocabulary(runner, entry, bad):
    if entry == "call_mx_array" and bad == 2 ** 40:
        pytest.skip("an int32 MLX array cannot hold the id")
    with pytest.raises(TokenIdError, match=rf"id {bad} is outside \[0, {VOCAB - 1}\]") as info:
        ENTRY_POINTS[entry](runner, [1, bad, 3])
    assert "\n" not in str(info.value) and isinstance(info.value, InputError)


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_the_largest_id_is_accepted(runner, entry):
    ENTRY_POINTS[entry](runner, [0, VOCAB - 1, 3])


@settings(max_examples=examples(15))
@given(st.lists(st.integers(0, VOCAB - 1), min_size=1, max_size=12), st.data())
def test_one_bad_id_anywhere_is_found(runner, ids, data):
    pos = data.draw(st.integers(0, len(ids) - 1))
    ids[pos] = data.draw(st.one_of(st.integers(VOCAB, 2 ** 31 - 1), st.integers(-(2 ** 31), -1)))
    with pytest.raises(TokenIdError, match=f"id {ids[pos]} is outside"):
        runner(ids)


def test_non_integer_and_ragged_token_ids_are_refused(runner):
    with pytest.raises(TokenIdError, match="must be integers"):
        runner([1.5, 2.0])
    with pytest.raises(TokenIdError, match="must be integers"):
        runner(mx.array([1.0, 2.0]))
    with pytest.raises(TokenIdError):
        runner([[1, 2], [3]])
    with pytest.raises(TokenIdError, match="empty"):
        runner([])


def test_sampled_tokens_are_checked_when_the_lm_head_is_wider_than_the_embedding():
    wide = xLSTMRunner.from_spec(spec(lm_head_vocab=4 * VOCAB), seed=0)  # 3 in 4 of its outputs have no embedding
    with pytest.raises(TokenIdError, match="a generated token: id .* is outside"):
        wide.generate([1, 2, 3], max_tokens=30)


def test_training_data_with_ids_outside_the_vocabulary_is_refused(tmp_path):
    r = xLSTMRunner.from_spec(spec(), seed=0)
    data = np.arange(200, dtype=np.int32) % VOCAB
    data[77] = VOCAB + 5
    cfg = TrainConfig(steps=2, batch_size=2, seq_len=8)
    with pytest.raises(TokenIdError, match=f"training data token ids: id {VOCAB + 5} is outside"):
        Trainer(r, TokenBatches(data, 2, 8), cfg, tmp_path / "run", progress=False)


def test_a_tokenizer_larger_than_the_vocabulary_is_refused_at_load(tmp_path):
    from bpe import byte_level_bpe

    r = xLSTMRunner.from_spec(spec(), seed=0)
    d = r.save_pretrained(tmp_path / "model", config={"model_type": "xlstm_metal", "vocab_size": VOCAB})
    tok = byte_level_bpe(["hello world"] * 10)
    tok.save(str(d / "tokenizer.json"))
    (d / "tokenizer_config.json").write_text(json.dumps({}))
    with pytest.raises(TokenIdError, match=rf"tokenizer.json: the tokenizer has {tok.get_vocab_size()} tokens but "
                                           rf"the model's embedding has {VOCAB}"):
        xLSTMRunner.from_pretrained(d)


def test_the_command_line_refuses_a_huge_token_id_in_one_line_instead_of_crashing():
    res = subprocess.run([sys.executable, "-m", "xlstm_metal.cli", "run", "xlstm_tiny", "--tokens", "100000000,2,3"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 1, res.stderr  # (it was -11: a segfault inside MLX)
    assert res.stderr.startswith("error: ") and res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    assert "id 100000000 is outside [0, " in res.stderr


def test_logits_larger_than_the_memory_are_refused_before_mlx_allocates(runner, monkeypatch):
    import xlstm_metal.memory as memory

    monkeypatch.setattr(memory, "available_memory", lambda: 10_000)
    with pytest.raises(memory.MemoryBudgetError, match=r"logits for 1 x 100 tokens need 16.0 KB but only 10.0 KB"):
        runner(list(range(1, 40)) * 2 + [1] * 22)
    runner([1, 2, 3], logits="last")  # (the last position's logits fit)


def test_a_training_step_larger_than_the_memory_is_refused(tmp_path, monkeypatch):
    import xlstm_metal.memory as memory

    r = xLSTMRunner.from_spec(spec(), seed=0)
    monkeypatch.setattr(memory, "available_memory", lambda: 10 ** 6)
    data = np.arange(5000, dtype=np.int32) % VOCAB
    with pytest.raises(memory.MemoryBudgetError, match="a training step of 64 x 1024 tokens needs over 31.5 MB"):
        Trainer(r, TokenBatches(data, 64, 1024), TrainConfig(steps=2, batch_size=64, seq_len=1024), tmp_path / "o",
                progress=False)
