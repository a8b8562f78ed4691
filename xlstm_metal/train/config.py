"""``TrainConfig``: the hyper-parameters of a training run, checked when made (no MLX needed: the command line
builds its options from these fields and defaults)."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError


class TrainConfigError(InputError):
    """A training hyper-parameter out of its range (the message names the field)."""


# field -> (lowest allowed value, whether the lowest is allowed): what each number means decides its range
_RANGES = {"steps": (1, True), "batch_size": (1, True), "seq_len": (1, True), "lr": (0, False),
           "min_lr_ratio": (0, True), "warmup": (0, True), "weight_decay": (0, True), "grad_clip": (0, True),
           "seed": (0, True), "eval_every": (1, True), "eval_batches": (1, True), "save_every": (1, True),
           "log_every": (1, True), "chunk_size": (1, True), "loss_chunk": (0, True)}

_FLOATS = {"lr", "min_lr_ratio", "weight_decay", "grad_clip"}


def default_warmup(steps: int) -> int:
    """Warmup scaled to the run: a tenth of the steps, at most 1000 (100 for the default 1000 steps)."""
    return max(1, min(1000, steps // 10))


@dataclass
class TrainConfig:
    steps: int = 1000
    batch_size: int = 16
    seq_len: int = 256
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup: int | None = None  # None: default_warmup(steps)
    weight_decay: float = 0.1
    grad_clip: float = 1.0  # 0: off
    seed: int = 0
    eval_every: int = 100
    eval_batches: int = 4
    save_every: int = 200
    log_every: int = 10
    chunk_size: int | None = None  # override every chunkwise kernel's chunk size while training
    compile: bool | None = None  # the step under mx.compile; None: on the GPU only (see train.loop.compiles_step)
    # recompute each block's forward in the backward: less memory, more compute (no dropout: it would redraw)
    checkpoint_blocks: bool = False
    # tokens per chunk of the output head and loss, each recomputed in the backward (train.loss); None: chunks of
    # ~256 MB of logits once a step's logits pass 1 GiB; 0: never
    loss_chunk: int | None = None

    def __post_init__(self):
        for name, (low, inclusive) in _RANGES.items():
            value = getattr(self, name)
            if value is None and name in ("warmup", "chunk_size", "loss_chunk"):
                continue
            kinds = (int, float) if name in _FLOATS else int
            if isinstance(value, bool) or not isinstance(value, kinds) or value != value:
                raise TrainConfigError(f"TrainConfig.{name} must be {'a number' if name in _FLOATS else 'an integer'}"
                                       f", got {value!r}")
            if value < low or (value == low and not inclusive) or value == float("inf"):
                raise TrainConfigError(f"TrainConfig.{name} must be {'>=' if inclusive else '>'} {low} and finite, "
                                       f"got {value!r}")
        if self.min_lr_ratio > 1:
            raise TrainConfigError(f"TrainConfig.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio!r}")
        if self.warmup is None:
            self.warmup = default_warmup(self.steps)
