"""The protocol's settings equal mad-lab's task configs (``configs/tasks/*.yml``) and recipe (``MADConfig``,
``make_benchmark_mad_configs``); a reduced budget is never mistaken for the protocol."""
from dataclasses import replace

import pytest

from xlstm_metal.mad import BASELINES, Budget, task_settings
from xlstm_metal.mad.settings import (BATCH_SIZE, EPOCHS, LEARNING_RATES, MIN_LR, WEIGHT_DECAYS, WIDTH, spread)

# configs/tasks/*.yml at athms/mad-lab 0f49a45: baseline, then {field: values} of the difficulty changes
MAD_LAB = {
    "in_context_recall": (dict(vocab_size=16, seq_len=128, num_train_examples=12800, multi_query=True),
                          dict(vocab_size=[32, 64, 128], seq_len=[256, 512, 1024],
                               num_train_examples=[6400, 3200, 1600, 800])),
    "fuzzy_recall": (dict(vocab_size=16, seq_len=128, num_train_examples=12800, multi_query=True, k_motif_size=3,
                          v_motif_size=3),
                     dict(vocab_size=[32, 64, 128], seq_len=[256, 512, 1024],
                          num_train_examples=[6400, 3200, 1600, 800])),
    "noisy_recall": (dict(vocab_size=32, noise_vocab_size=16, seq_len=128, num_train_examples=12800,
                          multi_query=True, frac_noise=0.2),
                     dict(vocab_size=[48, 80, 144], seq_len=[256, 512, 1024],
                          num_train_examples=[6400, 3200, 1600, 800], frac_noise=[0.4, 0.6, 0.8])),
    "selective_copying": (dict(vocab_size=16, seq_len=256, num_tokens_to_copy=16, num_train_examples=12800),
                          dict(vocab_size=[32, 64, 128], seq_len=[512, 1024],
                               num_train_examples=[6400, 3200, 1600, 800], num_tokens_to_copy=[32, 64, 96])),
    "compression": (dict(vocab_size=16, seq_len=32, num_train_examples=12800),
                    dict(vocab_size=[32, 64, 128], seq_len=[64, 128, 256], num_train_examples=[6400, 3200, 1600, 800])),
    "memorization": (dict(vocab_size=256, seq_len=32, num_train_examples=256),
                     dict(vocab_size=[512, 1024, 2048, 4096, 8192])),
}


@pytest.mark.parametrize("task", list(MAD_LAB))
def test_settings_are_the_baseline_then_each_change_alone(task):
    baseline, changes = MAD_LAB[task]
    expected = [replace(BASELINES[task], **baseline)]
    expected += [replace(expected[0], **{k: v}) for k, values in changes.items() for v in values]
    assert task_settings(task) == expected
    assert all(s.num_test_examples == 1280 and s.seed == 12345 and s.multi_query for s in expected)


def test_the_protocol_has_66_settings_and_396_runs_per_spec():
    n = sum(len(task_settings(t)) for t in MAD_LAB)
    assert n == 66 and n * len(LEARNING_RATES) * len(WEIGHT_DECAYS) == 396


def test_the_recipe_is_mad_labs():
    assert LEARNING_RATES == (1e-4, 5e-4, 1e-3) and WEIGHT_DECAYS == (0.0, 0.1)
    assert (EPOCHS, BATCH_SIZE, MIN_LR, WIDTH) == (200, 128, 1e-6, 128)


def test_directory_names_are_mad_labs():
    assert BASELINES["in_context_recall"].dir_name() == \
        "t-CR_vs-16_sl-128_ntr-12800_nte-1280_km-1_vm-1_mq-1_fn-0#0_nvs-0_ntc-0_s-12345"
    assert BASELINES["noisy_recall"].dir_name() == \
        "t-NR_vs-32_sl-128_ntr-12800_nte-1280_km-1_vm-1_mq-1_fn-0#2_nvs-16_ntc-0_s-12345"
    assert BASELINES["fuzzy_recall"].dir_name().startswith("t-FR_vs-16_sl-128_ntr-12800_nte-1280_km-3_vm-3_")


def test_labels_name_the_changed_field():
    assert [s.label() for s in task_settings("memorization")][:2] == ["baseline", "vocab_size=512"]


def test_spread_keeps_the_baseline_and_reaches_the_hardest():
    items = list(range(11))
    assert spread(items, 1) == [0] and spread(items, 3) == [0, 5, 10] and spread(items, None) == items


def test_only_the_full_budget_is_comparable():
    assert Budget().comparable and "comparable" in Budget().label()
    for reduced in (Budget.scaled(0.5), Budget(epochs=199), Budget(learning_rates=(1e-3,)), Budget(width=64),
                    Budget(examples=0.5)):
        assert not reduced.comparable and "NOT comparable" in reduced.label()
    assert Budget.scaled(0.1).epochs == 20 and len(Budget.scaled(0.1).task_settings("in_context_recall")) == 1
    with pytest.raises(ValueError, match="budget"):
        Budget.scaled(0)
