"""One MAD run: a spec trained on one setting's training split with one learning rate and weight decay, scored
on its test split. The recipe is mad-lab's (``train.py``, ``mad/model/pl_model_wrapper.py``): AdamW
(betas 0.9/0.999), cross-entropy over the non-ignored targets, cosine learning rate stepped per epoch down to
1e-6, shuffled batches of 128 (the last one partial), no gradient clipping, and a stop as soon as the test
accuracy reaches 0.999 after an epoch. Training runs in float32 (mad-lab: bf16 mixed precision).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import mlx.core as mx
import mlx.optimizers as optim
import numpy as np
from mlx.utils import tree_flatten

from ..train.loop import make_step
from ..train.loss import mean_cross_entropy
from .data import Split
from .metrics import mad_accuracy, token_accuracy
from .model import MadModel
from .settings import BATCH_SIZE, MIN_LR, STOP_ACCURACY


@dataclass
class RunOutcome:
    test_accuracy: float  # mad-lab's accuracy (macro over classes), the MAD score's unit
    token_accuracy: float  # the fraction of scored test positions predicted exactly
    test_loss: float
    train_loss: float  # the last epoch's mean
    epochs: int  # epochs run (fewer than asked when the test accuracy reached the stop)
    parameters: int
    seconds: float


def cosine_lr(lr: float, epoch: int, epochs: int, min_lr: float = MIN_LR) -> float:
    """torch's ``CosineAnnealingLR(T_max=epochs, eta_min=min_lr)`` at ``epoch``."""
    return min_lr + (lr - min_lr) * (1 + math.cos(math.pi * epoch / epochs)) / 2


def evaluate(model: MadModel, split: Split, vocab_size: int,
             batch_size: int = BATCH_SIZE) -> tuple[float, float, float]:
    """(mad-lab accuracy, token accuracy, loss) of ``model`` on ``split``."""
    preds, losses, weights = [], [], []
    for a in range(0, len(split.inputs), batch_size):
        x, y = mx.array(split.inputs[a:a + batch_size]), mx.array(split.targets[a:a + batch_size])
        logits = model(x)
        loss = mean_cross_entropy(logits, y)
        preds.append(np.array(mx.argmax(logits, axis=-1)))
        losses.append(loss.item())
        weights.append(len(x))
    pred = np.concatenate(preds)
    return (mad_accuracy(pred, split.targets, vocab_size, batch_size), token_accuracy(pred, split.targets),
            float(np.average(losses, weights=weights)))


def train_run(spec, train: Split, test: Split, *, vocab_size: int, autoencoder: bool, lr: float, weight_decay: float,
              epochs: int, width: int | None, batch_size: int = BATCH_SIZE, seed: int = 0,
              on_epoch=None) -> RunOutcome:
    """Train a fresh model of ``spec`` and score it; ``on_epoch(epoch, train_loss, test_accuracy)`` after each."""
    mx.random.seed(seed)
    model = MadModel(spec, vocab_size, width, autoencoder)
    parameters = sum(v.size for _, v in tree_flatten(model.trainable_parameters()))
    opt = optim.AdamW(learning_rate=lr, weight_decay=weight_decay)

    def loss_fn(model, x, y):
        return mean_cross_entropy(model(x, training=True), y)

    step = make_step(model, loss_fn, opt, grad_clip=0.0)
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    train_loss, epoch = float("nan"), 0
    scores = evaluate(model, test, vocab_size, batch_size) if epochs <= 0 else (0.0, 0.0, float("nan"))
    while epoch < epochs and scores[0] < STOP_ACCURACY:
        opt.learning_rate = cosine_lr(lr, epoch, epochs)
        order = rng.permutation(len(train.inputs))
        total, count = mx.array(0.0), 0
        for a in range(0, len(order), batch_size):
            idx = order[a:a + batch_size]
            loss = step(mx.array(train.inputs[idx]), mx.array(train.targets[idx]))
            mx.eval(loss, model.state, opt.state)
            total, count = total + loss * len(idx), count + len(idx)
        train_loss = (total / max(count, 1)).item()
        scores = evaluate(model, test, vocab_size, batch_size)
        epoch += 1
        if on_epoch:
            on_epoch(epoch, train_loss, scores[0])
    return RunOutcome(*scores, train_loss, epoch, parameters, time.perf_counter() - t0)
