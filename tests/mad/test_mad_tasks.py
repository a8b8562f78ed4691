"""The six MAD generators follow the task definitions of mad-lab (``mad/data/instances.py``): token layout,
vocabulary ranges, special tokens, scored positions with ignore index -100, answers recoverable from the input,
determinism by seed, and the reference's own instances for its seed."""
import numpy as np
import pytest

from xlstm_metal.mad.tasks import IGNORE, TASKS, generate, memorization_table


def make(task, n, seed=0, is_training=False, **params):
    return generate(task, n, np.random.default_rng(seed), is_training, **params)


BASE = {"in_context_recall": dict(vocab_size=16, seq_len=128),
        "fuzzy_recall": dict(vocab_size=16, seq_len=128, k_motif_size=3, v_motif_size=3),
        "noisy_recall": dict(vocab_size=32, seq_len=128, noise_vocab_size=16, frac_noise=0.2),
        "selective_copying": dict(vocab_size=16, seq_len=256, num_tokens_to_copy=16),
        "compression": dict(vocab_size=16, seq_len=32),
        "memorization": dict(vocab_size=256, seq_len=32)}
LENGTH = {"in_context_recall": 127, "noisy_recall": 127}  # the others: seq_len


def test_ignore_index_is_torchs():
    assert IGNORE == -100


@pytest.mark.parametrize("task", list(TASKS))
@pytest.mark.parametrize("is_training", [True, False])
def test_shapes_vocab_ranges_and_scored_positions(task, is_training):
    p = BASE[task]
    x, y = make(task, 6, is_training=is_training, **p)
    length = LENGTH.get(task, p["seq_len"])
    assert x.shape == y.shape == (6, length) and x.dtype == y.dtype == np.int64
    assert x.min() >= 0 and x.max() < p["vocab_size"]
    scored = y != IGNORE
    assert scored.any(axis=1).all(), "every instance is scored somewhere"
    assert set(np.unique(y[~scored])) <= {IGNORE}
    assert y[scored].min() >= 0 and y[scored].max() < p["vocab_size"]


@pytest.mark.parametrize("task", list(TASKS))
def test_determinism_by_seed(task):
    a, b, c = (make(task, 4, seed=s, **BASE[task]) for s in (7, 7, 8))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("task", ["in_context_recall", "fuzzy_recall", "noisy_recall"])
def test_recall_training_instances_score_every_next_token(task):
    x, y = make(task, 4, is_training=True, **BASE[task])
    assert np.array_equal(x[:, 1:], y[:, :-1])


@pytest.mark.parametrize("task", ["in_context_recall", "noisy_recall"])
def test_recall_answers_are_the_values_stored_earlier_under_the_same_key(task):
    p = BASE[task]
    n = p["vocab_size"] - p.get("noise_vocab_size", 0)
    x, y = make(task, 20, **p)
    for row_x, row_y in zip(x, y):
        assert row_y[-1] != IGNORE, "the final probe is scored"
        for t in np.flatnonzero(row_y != IGNORE):
            key, value = row_x[t], row_y[t]
            assert key < n // 2 <= value < n
            earlier = [j for j in range(0, t, 2) if row_x[j] == key]
            assert earlier and all(row_x[j + 1] == value for j in earlier)


def test_noisy_recall_noise_tokens_come_in_pairs_from_their_own_range():
    x, _ = make("noisy_recall", 20, **BASE["noisy_recall"])
    noise = x >= 16
    assert noise.any() and (x[noise] < 32).all()
    pairs = noise[:, :-1].reshape(20, -1, 2)  # positions (0,1), (2,3), ...: a pair is all noise or none
    assert (pairs[..., 0] == pairs[..., 1]).all()


def test_fuzzy_recall_probe_answer_follows_the_same_key_motif_earlier():
    """As in the reference, the probe pair is placed at a random point that the sequence may end before (when
    key and value are short), so a few probes are not answerable; nearly all are."""
    x, y = make("fuzzy_recall", 100, **BASE["fuzzy_recall"])
    pad, answerable = 15, 0
    for row_x, row_y in zip(x, y):
        start = len(row_y)
        while row_y[start - 1] != IGNORE:  # the final probe's value: the scored run at the end
            start -= 1
        tail = np.arange(start, len(row_y))
        assert 1 <= len(tail) <= 3
        value = row_y[tail]
        key = row_x[tail[0] - 2:tail[0] + 1]  # test keys have the full motif size 3
        assert (key < 7).all() and (value >= 7).all() and (value < 15).all()
        text = row_x.tolist()
        hits = [i for i in range(tail[0] - 2) if text[i:i + 3] == key.tolist()]
        answerable += any(text[i + 3:i + 3 + len(value)] == value.tolist() for i in hits)
        nonpad = np.flatnonzero(row_x != pad)
        assert (row_x[:nonpad[0]] == pad).all() and (row_x[nonpad[0]:] != pad).all(), "padding only in front"
    assert answerable >= 90


def test_selective_copying_targets_are_the_non_blank_tokens_in_order_after_the_copy_token():
    x, y = make("selective_copying", 10, **BASE["selective_copying"])
    blank, copy, n = 14, 15, 16
    for row_x, row_y in zip(x, y):
        at = int(np.flatnonzero(row_x == copy)[0])
        assert at == 256 - n - 1 and (row_x[at + 1:] == blank).all()
        tokens = row_x[:at][row_x[:at] != blank]
        assert np.array_equal(tokens, row_y[at + 1:]) and (row_y[:at + 1] == IGNORE).all()
        assert row_x[at - 1] != blank, "no blank follows the last token to copy"


def test_compression_ends_with_the_compression_token_and_reconstructs_everything():
    x, y = make("compression", 10, **BASE["compression"])
    assert np.array_equal(x, y) and (x[:, -1] == 15).all() and (x[:, :-1] < 15).all()


def test_memorization_scores_a_fixed_table_shared_by_all_instances_and_seeds():
    keys, value_of = memorization_table(255)
    assert sorted(keys.tolist()) == list(range(127))
    assert len(set(value_of.tolist())) == 127 and set(value_of.tolist()) <= set(range(127, 255))
    for seed in (0, 1):
        x, y = make("memorization", 10, seed=seed, **BASE["memorization"])
        assert (x[:, 1::2] == 255).all() and (y[:, 0::2] == IGNORE).all()
        assert np.array_equal(y[:, 1::2], value_of[x[:, 0::2]])


# mad-lab's generators (athms/mad-lab 0f49a45, instances.py) with rng = default_rng(12345): three training then
# two test instances of each baseline; the first training instance's first tokens, the sum of the training
# inputs, the sum of the test instances' scored targets.
REFERENCE = {"in_context_recall": ([1, 14, 2, 9, 6, 13, 5, 15, 3, 14, 2, 9], 2889, 1291),
             "noisy_recall": ([1, 9, 6, 15, 3, 12, 25, 19, 5, 13, 1, 9], 4210, 1022),
             "fuzzy_recall": ([15, 15, 15, 15, 15, 15, 15, 2, 4, 8, 1, 3], 2766, 118),
             "memorization": ([115, 255, 4, 255, 77, 255, 19, 255, 37, 255, 82, 255], 15492, 6361),
             "compression": ([10, 3, 11, 4, 3, 11, 9, 10, 14, 5, 12, 4], 710, 421)}


@pytest.mark.parametrize("task", list(REFERENCE))
def test_one_seed_gives_the_reference_implementations_instances(task):
    rng = np.random.default_rng(12345)
    train_x, _ = generate(task, 3, rng, True, **BASE[task])
    _, test_y = generate(task, 2, rng, False, **BASE[task])
    head, train_sum, test_sum = REFERENCE[task]
    assert train_x[0, :12].tolist() == head
    assert int(train_x.sum()) == train_sum and int(test_y[test_y != IGNORE].sum()) == test_sum


def test_impossible_lengths_are_refused():
    with pytest.raises(ValueError, match="seq_len"):
        make("selective_copying", 1, vocab_size=16, seq_len=20, num_tokens_to_copy=16)
    with pytest.raises(ValueError, match="even"):
        make("in_context_recall", 1, vocab_size=16, seq_len=31)
