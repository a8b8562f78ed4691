"""MAD data sets on disk in mad-lab's benchmark layout: ``<data dir>/<setting dir>/{train,test}/{inputs,targets}.npy``.

``setting_data`` reads a setting's data when its directory exists (e.g. the published benchmark data) and
otherwise generates it the way mad-lab does: one ``default_rng(seed)`` makes the training instances, then,
continuing, the independent test instances. ``write_split`` writes each array atomically.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from .settings import Setting
from .tasks import IGNORE, generate


class MadDataError(InputError):
    """A MAD data file that cannot serve its setting (missing, unreadable, wrong shape or token ids)."""


@dataclass
class Split:
    inputs: np.ndarray  # [n, L] token ids
    targets: np.ndarray  # [n, L] token ids, IGNORE where nothing is scored


def generate_setting(setting: Setting) -> tuple[Split, Split]:
    """The setting's training and test splits, generated as mad-lab generates them."""
    rng = np.random.default_rng(setting.seed)
    params = setting.generator_params()
    train = Split(*generate(setting.task, setting.num_train_examples, rng, True, **params))
    test = Split(*generate(setting.task, setting.num_test_examples, rng, False, **params))
    return train, test


def write_split(split: Split, directory: Path) -> None:
    """``inputs.npy`` and ``targets.npy`` in ``directory``, each written to a unique temporary and renamed."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, array in (("inputs", split.inputs), ("targets", split.targets)):
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".npy")
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, np.ascontiguousarray(array, dtype=np.int64))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, directory / f"{name}.npy")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def read_split(directory: Path, vocab_size: int, examples: int | None = None) -> Split:
    """A split written by ``write_split`` or by mad-lab, checked against the setting before it is used."""
    arrays = {}
    for name in ("inputs", "targets"):
        path = directory / f"{name}.npy"
        try:
            arrays[name] = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise MadDataError(f"{path}: missing (a split directory holds inputs.npy and targets.npy)") from None
        except (OSError, ValueError) as exc:
            raise MadDataError(f"{path}: not a readable .npy array ({exc})") from None
        a = arrays[name]
        if a.ndim != 2 or not np.issubdtype(a.dtype, np.integer):
            raise MadDataError(f"{path}: expected an integer array [examples, seq_len], got {a.dtype} {a.shape}")
    x, y = arrays["inputs"], arrays["targets"]
    if x.shape != y.shape:
        raise MadDataError(f"{directory}: inputs.npy {x.shape} and targets.npy {y.shape} differ in shape")
    if examples is not None and len(x) != examples:
        raise MadDataError(f"{directory}/inputs.npy: {len(x)} examples, the setting has {examples}")
    if x.size and (x.min() < 0 or x.max() >= vocab_size):
        raise MadDataError(f"{directory}/inputs.npy: token ids {x.min()}..{x.max()} outside the setting's "
                           f"vocabulary 0..{vocab_size - 1}")
    bad = (y != IGNORE) & ((y < 0) | (y >= vocab_size))
    if bad.any():
        raise MadDataError(f"{directory}/targets.npy: target {y[bad][0]} is neither {IGNORE} (ignored) nor in "
                           f"0..{vocab_size - 1}")
    return Split(x.astype(np.int64), y.astype(np.int64))


def write_setting(train: Split, test: Split, directory: Path) -> None:
    """Both splits under ``directory`` (mad-lab's layout), put in place by one rename; an existing directory
    (another writer's, or the user's) is kept."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}."))
    try:
        write_split(train, tmp / "train")
        write_split(test, tmp / "test")
        try:
            os.rename(tmp, directory)
        except OSError:
            if not directory.is_dir():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def setting_data(setting: Setting, data_dir: Path | None) -> tuple[Split, Split]:
    """The setting's (train, test) splits: read from ``data_dir/<setting dir>`` if present (e.g. the published
    benchmark data), else generated, and written there when ``data_dir`` is given."""
    directory = None if data_dir is None else Path(data_dir) / setting.dir_name()
    if directory is not None and directory.is_dir():
        return (read_split(directory / "train", setting.vocab_size, setting.num_train_examples),
                read_split(directory / "test", setting.vocab_size, setting.num_test_examples))
    train, test = generate_setting(setting)
    if directory is not None:
        write_setting(train, test, directory)
    return train, test
