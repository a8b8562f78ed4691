"""MAD accuracy is mad-lab's: torchmetrics' macro-averaged multiclass accuracy over non-ignored targets, per
evaluation batch, averaged over batches by size."""
import numpy as np

from xlstm_metal.mad.metrics import mad_accuracy, macro_accuracy, token_accuracy
from xlstm_metal.mad.tasks import IGNORE


def test_macro_accuracy_averages_per_class_recall():
    target = np.array([[1, 1, 1, 2, IGNORE]])
    pred = np.array([[1, 1, 2, 2, 3]])  # class 1: 2/3, class 2: 1/1; the ignored position does not count
    assert np.isclose(macro_accuracy(pred, target, 4), (2 / 3 + 1) / 2)
    assert np.isclose(token_accuracy(pred, target), 3 / 4)


def test_a_class_only_predicted_counts_as_zero():
    assert np.isclose(macro_accuracy(np.array([[1, 3]]), np.array([[1, 1]]), 4), (1 / 2 + 0) / 2)


def test_batches_are_averaged_by_size():
    target = np.array([[1], [1], [2]])
    pred = np.array([[1], [1], [1]])  # batch of 2: accuracy 1; batch of 1: class 2 missed, class 1 predicted: 0
    assert np.isclose(mad_accuracy(pred, target, 3, batch_size=2), (2 * 1 + 1 * 0) / 3)
