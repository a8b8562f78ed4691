"""The MAD protocol's settings: per task a baseline and its difficulty changes (mad-lab ``configs/tasks/*.yml``),
the training recipe (mad-lab ``MADConfig``) and the learning-rate × weight-decay sweep
(``make_benchmark_mad_configs``).

A setting is the baseline with one field changed to one value; a task's MAD score averages over its settings.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from .tasks import TASKS

LEARNING_RATES = (1e-4, 5e-4, 1e-3)
WEIGHT_DECAYS = (0.0, 0.1)
EPOCHS = 200
BATCH_SIZE = 128
MIN_LR = 1e-6  # the cosine schedule's floor, stepped once per epoch
WIDTH = 128
STOP_ACCURACY = 0.999  # training stops once test accuracy reaches this (mad-lab's early-stopping threshold)
SEED = 12345


@dataclass(frozen=True)
class Setting:
    """One task setting (mad-lab's ``MADConfig`` task fields)."""
    task: str
    vocab_size: int
    seq_len: int
    num_train_examples: int
    num_test_examples: int = 1280
    k_motif_size: int = 1
    v_motif_size: int = 1
    multi_query: bool = True
    frac_noise: float = 0.0
    noise_vocab_size: int = 0
    num_tokens_to_copy: int = 0
    seed: int = SEED

    def generator_params(self) -> dict:
        """Keyword arguments of the task's generator."""
        skip = {"task", "num_train_examples", "num_test_examples"}
        return {k: v for k, v in asdict(self).items() if k not in skip}

    def dir_name(self) -> str:
        """mad-lab's directory name for this setting's data (``mad/paths.py: make_dataset_path``), e.g.
        ``t-CR_vs-16_sl-128_ntr-12800_nte-1280_km-1_vm-1_mq-1_fn-0#0_nvs-0_ntc-0_s-12345``."""
        short = {"vocab_size": "vs", "seq_len": "sl", "num_train_examples": "ntr", "num_test_examples": "nte",
                 "k_motif_size": "km", "v_motif_size": "vm", "multi_query": "mq", "frac_noise": "fn",
                 "noise_vocab_size": "nvs", "num_tokens_to_copy": "ntc", "seed": "s"}
        values = asdict(self)

        def text(v):
            return str(int(v)) if isinstance(v, bool) else str(v).replace(".", "#")
        return "_".join([f"t-{TASKS[self.task].shorthand}"] + [f"{s}-{text(values[k])}" for k, s in short.items()])

    def label(self) -> str:
        """What distinguishes this setting from its task's baseline, e.g. ``seq_len=512`` or ``baseline``."""
        base = BASELINES[self.task]
        changed = [f"{k}={v}" for k, v in asdict(self).items() if v != getattr(base, k)]
        return ",".join(changed) or "baseline"


BASELINES: dict[str, Setting] = {
    "in_context_recall": Setting("in_context_recall", 16, 128, 12800),
    "fuzzy_recall": Setting("fuzzy_recall", 16, 128, 12800, k_motif_size=3, v_motif_size=3),
    "noisy_recall": Setting("noisy_recall", 32, 128, 12800, noise_vocab_size=16, frac_noise=0.2),
    "selective_copying": Setting("selective_copying", 16, 256, 12800, num_tokens_to_copy=16),
    "compression": Setting("compression", 16, 32, 12800),
    "memorization": Setting("memorization", 256, 32, 256),
}

CHANGES: dict[str, dict[str, tuple]] = {
    "in_context_recall": {"vocab_size": (32, 64, 128), "seq_len": (256, 512, 1024),
                          "num_train_examples": (6400, 3200, 1600, 800)},
    "fuzzy_recall": {"vocab_size": (32, 64, 128), "seq_len": (256, 512, 1024),
                     "num_train_examples": (6400, 3200, 1600, 800)},
    "noisy_recall": {"vocab_size": (48, 80, 144), "seq_len": (256, 512, 1024),  # 16 of each are noise tokens
                     "num_train_examples": (6400, 3200, 1600, 800), "frac_noise": (0.4, 0.6, 0.8)},
    "selective_copying": {"vocab_size": (32, 64, 128), "seq_len": (512, 1024),
                          "num_train_examples": (6400, 3200, 1600, 800), "num_tokens_to_copy": (32, 64, 96)},
    "compression": {"vocab_size": (32, 64, 128), "seq_len": (64, 128, 256),
                    "num_train_examples": (6400, 3200, 1600, 800)},
    "memorization": {"vocab_size": (512, 1024, 2048, 4096, 8192)},
}


def task_settings(task: str) -> list[Setting]:
    """The task's baseline, then each change applied to the baseline alone (mad-lab's order)."""
    base = BASELINES[task]
    return [base] + [replace(base, **{field: value}) for field, values in CHANGES[task].items() for value in values]


def spread(settings: list, count: int | None) -> list:
    """``count`` of ``settings`` spread evenly from the first (the baseline) to the last; ``None``: all."""
    if count is None or count >= len(settings):
        return list(settings)
    if count <= 1:
        return settings[:1]
    picks = sorted({round(i * (len(settings) - 1) / (count - 1)) for i in range(count)})
    return [settings[i] for i in picks]
